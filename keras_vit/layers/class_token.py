import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassToken(keras.layers.Layer):
    """Prepends one learned `[class]` token to a token sequence.

    Args:
        initializer: initializer of the `(1, 1, D)` token. The original ViT
            initialises it to zeros (timm: normal std 1e-6, HF: trunc-normal 0.02).

    Call arguments:
        tokens: `(B, N, D)`.

    Returns:
        `(B, 1 + N, D)`, the class token first.

    Example:
    >>> tuple(ClassToken()(keras.ops.zeros((2, 100, 32))).shape)
    (2, 101, 32)
    """

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]), initializer=self.initializer, name="token"
        )

    def call(self, tokens):
        token = ops.cast(self.token, tokens.dtype)
        # (1, 1, D) -> (B, 1, D)
        token = ops.broadcast_to(token, (ops.shape(tokens)[0], 1, ops.shape(tokens)[2]))
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        batch, tokens, width = input_shape
        return (batch, None if tokens is None else tokens + 1, width)

    def get_config(self):
        config = super().get_config()
        config["initializer"] = keras.initializers.serialize(self.initializer)
        return config
