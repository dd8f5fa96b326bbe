import keras

from keras_vit.utils.validation import check_pair
from keras_vit.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class SegmenterLinearDecoder(keras.layers.Layer):
    """Segmenter's linear decoder (Strudel et al., 2021, section 3.2): a 1x1
    projection of each patch token to `num_classes` logits, laid out on the
    patch grid.

    Args:
        num_classes: int, K.
        grid_size: `(h, w)`, the patch grid.

    Call arguments:
        tokens: `(B, h * w, D)` patch tokens (prefix tokens removed).

    Returns:
        `(B, h, w, K)` patch-level logits.

    >>> decoder = SegmenterLinearDecoder(num_classes=5, grid_size=(3, 4))
    >>> tuple(decoder(keras.ops.zeros((2, 12, 8))).shape)
    (2, 3, 4, 5)
    """

    def __init__(self, num_classes, grid_size, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.grid_size = tuple(check_pair("grid_size", grid_size))
        self.head = keras.layers.Dense(self.num_classes, dtype=self.dtype_policy, name="head")

    def build(self, input_shape):
        self.head.build(input_shape)
        self.built = True

    def call(self, tokens):
        height, width = self.grid_size
        check_grid_tokens(tokens, self.grid_size)
        return keras.ops.reshape(self.head(tokens), (-1, height, width, self.num_classes))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.grid_size, self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "grid_size": list(self.grid_size)})
        return config


def check_grid_tokens(tokens, grid_size):
    height, width = grid_size
    if len(tokens.shape) != 3 or (tokens.shape[1] is not None and tokens.shape[1] != height * width):
        raise ValueError(
            f"tokens must be (B, {height * width}, D): the patch tokens of a {height}x{width} grid, "
            f"prefix tokens removed. Received: tokens.shape={tuple(tokens.shape)}, grid_size={tuple(grid_size)}"
        )
