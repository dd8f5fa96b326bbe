import keras

from keras_vit.layers.std_conv2d import StdConv2D
from keras_vit.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetStem(keras.layers.Layer):
    """BiT / R50+ViT root: StdConv 7x7 stride 2 -> GroupNorm -> ReLU -> max-pool 3x3 stride 2.

    Both strided operations use TF-style "same" padding (original JAX hybrid,
    timm `stem_type="same"`), so the output stride is 4.

    Args:
        filters: int, stem width (64 for R50).
        norm_epsilon: float, GroupNorm epsilon (timm: 1e-5).
        groups: int, GroupNorm groups (32).

    Call arguments:
        images: `(B, H, W, C)`.

    Returns:
        `(B, ceil(H/4), ceil(W/4), filters)`.
    """

    def __init__(self, filters=64, norm_epsilon=1e-5, groups=32, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.norm_epsilon = float(norm_epsilon)
        self.groups = check_positive_int("groups", groups)
        self.conv = StdConv2D(self.filters, 7, strides=2, dtype=self.dtype_policy, name="conv")
        self.norm = keras.layers.GroupNormalization(
            groups=self.groups, epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.pool = keras.layers.MaxPooling2D(3, strides=2, padding="same", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, images):
        return self.pool(keras.activations.relu(self.norm(self.conv(images))))

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "norm_epsilon": self.norm_epsilon, "groups": self.groups})
        return config
