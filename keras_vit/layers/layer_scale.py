import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerScale(keras.layers.Layer):
    """Per-channel learned scale of a residual branch (CaiT, DeiT III).

    Args:
        init_value: float, the initial value of every channel's scale.

    Call arguments:
        inputs: `(..., D)`.

    Returns:
        `inputs * gamma`, same shape.
    """

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        if isinstance(init_value, bool) or not isinstance(init_value, (int, float)):
            raise TypeError(
                f"init_value must be a float. Received: init_value={init_value!r}"
            )
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
            name="gamma",
        )

    def call(self, inputs):
        return inputs * ops.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["init_value"] = self.init_value
        return config
