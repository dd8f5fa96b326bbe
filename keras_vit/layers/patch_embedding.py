import keras
from keras import ops

from keras_vit.layers.conv2d import Conv2D
from keras_vit.utils.validation import check_pair
from keras_vit.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEmbedding(keras.layers.Layer):
    """Splits an image into patches and projects each one to `hidden_dim`.

    A convolution whose kernel and stride are the patch size ("valid" padding),
    then a row-major flatten of the patch grid, as in the original ViT.

    Args:
        hidden_dim: int, D, the token width.
        patch_size: int or `(ph, pw)`.
        kernel_initializer: initializer of the `(ph, pw, C, D)` kernel. The
            default is flax's lecun_normal, as in the original ViT.
        bias_initializer: initializer of the `(D,)` bias.

    Call arguments:
        images: `(B, H, W, C)` with H, W multiples of the patch size.

    Returns:
        `(B, h*w, D)` tokens, h = H / ph and w = W / pw.

    Example:
    >>> layer = PatchEmbedding(hidden_dim=32, patch_size=3)
    >>> tuple(layer(keras.ops.zeros((2, 30, 30, 3))).shape)
    (2, 100, 32)
    """

    def __init__(
        self,
        hidden_dim,
        patch_size,
        kernel_initializer="lecun_normal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.patch_size = check_pair("patch_size", patch_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.projection = Conv2D(
            self.hidden_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, images):
        x = self.projection(images)
        # (B, h, w, D) -> (B, h*w, D), row-major like the reference models.
        return ops.reshape(x, (ops.shape(x)[0], -1, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if height is None or width is None:
            return (batch, None, self.hidden_dim)
        tokens = (height // self.patch_size[0]) * (width // self.patch_size[1])
        return (batch, tokens, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "patch_size": self.patch_size,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
