"""The bottleneck adapter of the VPT paper's Adapter baseline (Pfeiffer
placement: one adapter after each block's MLP)."""

import keras

from keras_vit.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class BottleneckAdapter(keras.layers.Layer):
    """`x + up(relu(down(x)))`: a down-projection to `D / reduction`, ReLU
    (AdapterHub's default for the Pfeiffer adapter) and an up-projection
    back to D, with a residual connection.

    The up-projection starts at zero, so a freshly inserted adapter is the
    identity and a prepared model's outputs equal the unprepared model's.

    Args:
        hidden_dim: int, D.
        reduction: int, the bottleneck is `max(1, D // reduction)` wide
            (8 in the VPT paper's Adapter baseline).

    Call arguments:
        x: `(..., D)`.

    Returns:
        `(..., D)`.

    Example:
    >>> adapter = BottleneckAdapter(hidden_dim=32, reduction=8)
    >>> tuple(adapter(keras.ops.ones((2, 101, 32))).shape)
    (2, 101, 32)
    """

    def __init__(self, hidden_dim, reduction=8, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.reduction = check_positive_int("reduction", reduction)
        self.bottleneck_dim = max(1, self.hidden_dim // self.reduction)
        self.down = keras.layers.Dense(self.bottleneck_dim, dtype=self.dtype_policy, name="down")
        self.up = keras.layers.Dense(
            self.hidden_dim, kernel_initializer="zeros", dtype=self.dtype_policy, name="up"
        )

    def build(self, input_shape):
        self.down.build(input_shape)
        self.up.build(tuple(input_shape[:-1]) + (self.bottleneck_dim,))

    def call(self, x):
        return x + self.up(keras.ops.relu(self.down(x)))

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "reduction": self.reduction})
        return config
