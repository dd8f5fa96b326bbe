import keras
from keras import ops

from keras_vit.ops.interpolation import resize_position_embedding
from keras_vit.utils.validation import check_pair


@keras.saving.register_keras_serializable(package="keras_vit")
class PositionEmbedding(keras.layers.Layer):
    """Learned position embedding for an `h x w` patch grid plus prefix tokens.

    One `(1, P + h*w, D)` table added to the tokens, the `P` prefix rows (the
    class token) first, as in the original ViT, timm and transformers. The table
    can be resized to another grid with `resized_embedding` (class-token row
    kept, grid interpolated), which is how a model is moved to a new resolution.

    Args:
        grid_size: int or `(h, w)`, the patch grid.
        num_prefix_tokens: int, P, rows before the grid (1 with a class token).
        initializer: initializer of the table (the reference models use a
            normal / truncated normal with std 0.02).

    Call arguments:
        tokens: `(B, P + h*w, D)`.

    Returns:
        `(B, P + h*w, D)`, tokens plus the table.

    Example:
    >>> layer = PositionEmbedding(grid_size=(10, 10))
    >>> tuple(layer(keras.ops.zeros((2, 101, 32))).shape)
    (2, 101, 32)
    """

    def __init__(
        self,
        grid_size,
        num_prefix_tokens=1,
        initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.grid_size = check_pair("grid_size", grid_size)
        if (
            isinstance(num_prefix_tokens, bool)
            or not isinstance(num_prefix_tokens, int)
            or num_prefix_tokens < 0
        ):
            raise ValueError(
                "num_prefix_tokens must be a non-negative int. "
                f"Received: num_prefix_tokens={num_prefix_tokens!r}"
            )
        self.num_prefix_tokens = num_prefix_tokens
        if initializer is None:
            initializer = keras.initializers.RandomNormal(stddev=0.02)
        self.initializer = keras.initializers.get(initializer)

    @property
    def num_tokens(self):
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]

    def build(self, input_shape):
        if input_shape[1] is not None and input_shape[1] != self.num_tokens:
            raise ValueError(
                f"PositionEmbedding expects {self.num_tokens} tokens "
                f"({self.num_prefix_tokens} prefix + {self.grid_size[0]}x"
                f"{self.grid_size[1]} grid). Received: input_shape={input_shape}"
            )
        self.embedding = self.add_weight(
            shape=(1, self.num_tokens, input_shape[-1]),
            initializer=self.initializer,
            name="embedding",
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def resized_embedding(
        self, grid_size, method="bicubic", align_corners=False, antialias=True
    ):
        """Returns the table resized to `grid_size` as a numpy array.

        The defaults match timm's `resample_abs_pos_embed`; pass
        `antialias=False` for transformers' `interpolate_pos_encoding`, or
        `method="bilinear", align_corners=True, antialias=False` for the original
        ViT checkpoint code. The computation is numpy, so every backend gives the
        same numbers.
        """
        return resize_position_embedding(
            keras.ops.convert_to_numpy(self.embedding),
            self.grid_size,
            check_pair("grid_size", grid_size),
            num_prefix_tokens=self.num_prefix_tokens,
            method=method,
            align_corners=align_corners,
            antialias=antialias,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_size": self.grid_size,
                "num_prefix_tokens": self.num_prefix_tokens,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
