"""The Swin Transformer block: (shifted) window attention with a relative
position bias, then an MLP (Liu et al., ICCV 2021, section 3.2).

The window helpers are plain functions of static sizes so that the masks and
the bias index are numpy constants whenever the feature map's size is known
(always on JAX and torch, and on TensorFlow for a fixed input size); on
TensorFlow with a height or width unknown when the step is traced, the mask
is computed in the graph from the padded size, with the same formula.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vit.backend.gelu import gelu
from keras_vit.layers.drop_path import DropPath
from keras_vit.utils.validation import check_non_negative_int
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate

# The value the reference code writes between tokens of different regions of
# a shifted window (its softmax makes them ~e^-100 of the rest, not exactly 0).
MASK_VALUE = -100.0


def relative_position_index(window_size):
    """`(W*W, W*W)` int: the row of the `(2W-1)^2` bias table for each pair
    of tokens of a window, `(dy + W - 1) * (2W - 1) + (dx + W - 1)` with
    `(dy, dx)` the first token's row/column minus the second's."""
    coords = np.stack(np.meshgrid(np.arange(window_size), np.arange(window_size), indexing="ij")).reshape(2, -1)
    relative = coords[:, :, None] - coords[:, None, :] + (window_size - 1)
    return (relative[0] * (2 * window_size - 1) + relative[1]).astype("int32")


def _regions(length, window_size, shift_size):
    """Per row (or column) of a padded, shifted map: 0, 1 or 2, the region it
    came from before the cyclic shift (`[0, L-W)`, `[L-W, L-S)`, `[L-S, L)`)."""
    index = np.arange(length)
    return (index >= length - window_size).astype("int32") + (index >= length - shift_size).astype("int32")


def shifted_window_mask(height, width, window_size, shift_size):
    """`(num_windows, W*W, W*W)` float32: 0 between tokens of one region, -100
    between tokens of different regions, for a padded map of `height x width`
    (multiples of the window) shifted by `shift_size` (the reference's mask,
    computed on the padded size as transformers' `SwinLayer` does)."""
    regions = _regions(height, window_size, shift_size)[:, None] * 3 + _regions(width, window_size, shift_size)[None]
    windows = regions.reshape(height // window_size, window_size, width // window_size, window_size)
    windows = windows.transpose(0, 2, 1, 3).reshape(-1, window_size * window_size)
    return np.where(windows[:, None, :] != windows[:, :, None], MASK_VALUE, 0.0).astype("float32")


def _shifted_window_mask_in_graph(height, width, window_size, shift_size):
    """`shifted_window_mask` with tensor sizes (TensorFlow, unknown height or width)."""

    def regions(length):
        index = ops.arange(length)
        return ops.cast(index >= length - window_size, "int32") + ops.cast(index >= length - shift_size, "int32")

    grid = regions(height)[:, None] * 3 + regions(width)[None, :]
    windows = ops.reshape(grid, (height // window_size, window_size, width // window_size, window_size))
    windows = ops.reshape(ops.transpose(windows, (0, 2, 1, 3)), (-1, window_size * window_size))
    different = ops.not_equal(windows[:, None, :], windows[:, :, None])
    return ops.where(different, MASK_VALUE, 0.0)


def window_partition(x, window_size, height, width):
    """`(B, H, W, C)` with H, W multiples of the window -> `(B, nW, W*W, C)`,
    windows in row-major order."""
    channels = x.shape[-1]
    x = ops.reshape(x, (-1, height // window_size, window_size, width // window_size, window_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, (height // window_size) * (width // window_size), window_size * window_size, channels))


def window_reverse(windows, window_size, height, width):
    """The inverse of `window_partition`."""
    channels = windows.shape[-1]
    x = ops.reshape(windows, (-1, height // window_size, width // window_size, window_size, window_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, channels))


def _size(x, axis):
    """A static size when known, else the tensor size."""
    return x.shape[axis] if x.shape[axis] is not None else ops.shape(x)[axis]


@keras.saving.register_keras_serializable(package="keras_vit")
class SwinWindowAttention(keras.layers.Layer):
    """Multi-head self-attention inside windows, with a learned relative
    position bias (Swin, eq. 4): `softmax(Q K^T / sqrt(d) + B + M) V`.

    `B` comes from a `(2W-1)^2 x heads` table indexed by each token pair's
    relative offset (`relative_position_index`); `M` is the shifted-window
    mask (0 or -100), per window.

    Weight layout: `qkv` kernel `(D, 3D)` (all query heads, all key heads,
    all value heads: the reference's fused `qkv`), `proj` `(D, D)`,
    `relative_position_bias_table` `((2W-1)^2, heads)`.

    Args:
        hidden_dim: int, D.
        num_heads: int, must divide D.
        window_size: int, W.
        qkv_bias: bool.
        attention_dropout_rate: float, dropout on the probabilities.

    Call arguments:
        windows: `(B, nW, W*W, D)`.
        attention_mask: None or `(nW, W*W, W*W)` additive (0 or -100).
        training: bool.
        return_attention_scores: bool.

    Returns:
        `(B, nW, W*W, D)`, and `(B, nW, heads, W*W, W*W)` probabilities if asked.
    """

    def __init__(self, hidden_dim, num_heads, window_size, qkv_bias=True, attention_dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_dim. Received: num_heads={num_heads}, hidden_dim={hidden_dim}."
            )
        self.window_size = check_positive_int("window_size", window_size)
        self.qkv_bias = bool(qkv_bias)
        self.attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
        self.head_dim = self.hidden_dim // self.num_heads
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.qkv = keras.layers.Dense(
            3 * self.hidden_dim, use_bias=self.qkv_bias, kernel_initializer=init, dtype=self.dtype_policy, name="qkv"
        )
        self.proj = keras.layers.Dense(self.hidden_dim, kernel_initializer=init, dtype=self.dtype_policy, name="proj")
        self.attention_dropout = keras.layers.Dropout(self.attention_dropout_rate, dtype=self.dtype_policy)
        self._index = relative_position_index(self.window_size).reshape(-1)

    def build(self, input_shape):
        self.relative_position_bias_table = self.add_weight(
            shape=((2 * self.window_size - 1) ** 2, self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="relative_position_bias_table",
        )
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def relative_position_bias(self):
        """`(heads, W*W, W*W)`: the table read at every token pair's offset."""
        area = self.window_size * self.window_size
        bias = ops.take(self.relative_position_bias_table, self._index, axis=0)
        return ops.transpose(ops.reshape(bias, (area, area, self.num_heads)), (2, 0, 1))

    def call(self, windows, attention_mask=None, training=None, return_attention_scores=False):
        area = self.window_size * self.window_size
        num_windows = _size(windows, 1)
        qkv = ops.reshape(self.qkv(windows), (-1, num_windows, area, 3, self.num_heads, self.head_dim))
        query, key, value = ops.unstack(qkv, 3, axis=3)  # each (B, nW, T, h, d)
        logits = ops.einsum("bwthd,bwshd->bwhts", query * (self.head_dim**-0.5), key)
        logits = ops.cast(logits, "float32") + ops.cast(self.relative_position_bias(), "float32")
        if attention_mask is not None:
            logits = logits + ops.cast(attention_mask, "float32")[None, :, None]
        scores = ops.cast(ops.softmax(logits, axis=-1), query.dtype)
        out = ops.einsum("bwhts,bwshd->bwthd", self.attention_dropout(scores, training=training), value)
        out = self.proj(ops.reshape(out, (-1, num_windows, area, self.hidden_dim)))
        return (out, scores) if return_attention_scores else out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "window_size": self.window_size,
                "qkv_bias": self.qkv_bias,
                "attention_dropout_rate": self.attention_dropout_rate,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class SwinTransformerBlock(keras.layers.Layer):
    """One Swin block on a `(B, H, W, D)` map (Swin, eq. 3):
    `x + DropPath(W-MSA(LN(x)))`, then `x + DropPath(MLP(LN(x)))`.

    The map is padded at the bottom and right to a multiple of the window,
    cyclically shifted up-left by `shift_size` (when non-zero), split into
    windows, attended with the mask that keeps the regions the shift brought
    together apart, merged, shifted back and cropped: transformers'
    `SwinLayer` order (pad, then shift). timm shifts before it pads; the two
    agree whenever the map is a multiple of the window.

    Args:
        hidden_dim: int, D.
        num_heads: int.
        window_size: int, W.
        shift_size: int in [0, W), 0 for a plain window block.
        mlp_ratio: float, the MLP's hidden width is `int(D * mlp_ratio)`.
        qkv_bias: bool.
        dropout_rate, attention_dropout_rate, drop_path_rate: floats.
        layer_norm_epsilon: float (1e-5, PyTorch's LayerNorm default).

    Call arguments:
        x: `(B, H, W, D)`.
        training: bool.
        return_attention_scores: bool; also returns `(B, nW, heads, W*W, W*W)`.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        window_size,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.window_size = check_positive_int("window_size", window_size)
        self.shift_size = check_non_negative_int("shift_size", shift_size)
        if self.shift_size >= self.window_size:
            raise ValueError(
                f"shift_size must be smaller than window_size (Swin uses window_size // 2). "
                f"Received: shift_size={shift_size}, window_size={window_size}."
            )
        if not isinstance(mlp_ratio, (int, float)) or isinstance(mlp_ratio, bool) or not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be a positive number (Swin: 4). Received: mlp_ratio={mlp_ratio!r}")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        self.attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
        self.drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        policy = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="norm1")
        self.attention = SwinWindowAttention(
            self.hidden_dim, self.num_heads, self.window_size, self.qkv_bias, self.attention_dropout_rate,
            dtype=policy, name="attention",
        )
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="norm2")
        self.fc1 = keras.layers.Dense(int(self.hidden_dim * self.mlp_ratio), kernel_initializer=init, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(self.hidden_dim, kernel_initializer=init, dtype=policy, name="fc2")
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"SwinTransformerBlock expects maps of width hidden_dim={self.hidden_dim}. "
                f"Received: input_shape={input_shape}"
            )
        token_shape = (None, None, self.hidden_dim)
        self.norm1.build(token_shape)
        self.attention.build((None, None, None, self.hidden_dim))
        self.norm2.build(token_shape)
        self.fc1.build(token_shape)
        self.fc2.build((None, None, self.fc1.units))

    def _mask(self, height, width):
        if not self.shift_size:
            return None
        if isinstance(height, int) and isinstance(width, int):
            return shifted_window_mask(height, width, self.window_size, self.shift_size)
        return _shifted_window_mask_in_graph(height, width, self.window_size, self.shift_size)

    def _windowed_attention(self, x, training, return_attention_scores):
        height, width = _size(x, 1), _size(x, 2)
        window = self.window_size
        static = isinstance(height, int) and isinstance(width, int)
        pad_bottom = (window - height % window) % window
        pad_right = (window - width % window) % window
        if not static or pad_bottom or pad_right:
            x = ops.pad(x, [[0, 0], [0, pad_bottom], [0, pad_right], [0, 0]])
        padded_height, padded_width = height + pad_bottom, width + pad_right
        if self.shift_size:
            x = ops.roll(x, shift=(-self.shift_size, -self.shift_size), axis=(1, 2))
        windows = window_partition(x, window, padded_height, padded_width)
        out = self.attention(
            windows, attention_mask=self._mask(padded_height, padded_width), training=training,
            return_attention_scores=return_attention_scores,
        )
        scores = None
        if return_attention_scores:
            out, scores = out
        x = window_reverse(out, window, padded_height, padded_width)
        if self.shift_size:
            x = ops.roll(x, shift=(self.shift_size, self.shift_size), axis=(1, 2))
        if not static or pad_bottom or pad_right:
            x = x[:, :height, :width, :]
        return x, scores

    def call(self, x, training=None, return_attention_scores=False):
        y, scores = self._windowed_attention(self.norm1(x), training, return_attention_scores)
        x = x + self.drop_path(self.dropout(y, training=training), training=training)
        y = self.fc2(self.dropout(gelu(self.fc1(self.norm2(x))), training=training))
        x = x + self.drop_path(self.dropout(y, training=training), training=training)
        return (x, scores) if return_attention_scores else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "window_size": self.window_size,
                "shift_size": self.shift_size,
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "dropout_rate": self.dropout_rate,
                "attention_dropout_rate": self.attention_dropout_rate,
                "drop_path_rate": self.drop_path_rate,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class SwinPatchMerging(keras.layers.Layer):
    """Swin's downsampling between stages: each 2x2 neighbourhood's features
    concatenated in the reference's order (`x[0::2, 0::2]`, `x[1::2, 0::2]`,
    `x[0::2, 1::2]`, `x[1::2, 1::2]`), LayerNorm(4D), then a bias-free
    Linear(4D -> 2D). An odd height or width is padded with one row or column
    of zeros at the bottom or right first (as timm and transformers).

    Args:
        hidden_dim: int, D (the input width).
        output_dim: int, 2D by default.
        layer_norm_epsilon: float (1e-5).

    Call arguments:
        x: `(B, H, W, D)`.

    Returns:
        `(B, ceil(H/2), ceil(W/2), output_dim)`.
    """

    def __init__(self, hidden_dim, output_dim=None, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.output_dim = 2 * self.hidden_dim if output_dim is None else check_positive_int("output_dim", output_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="norm")
        self.reduction = keras.layers.Dense(
            self.output_dim, use_bias=False, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=self.dtype_policy, name="reduction",
        )

    def build(self, input_shape):
        self.norm.build((None, None, None, 4 * self.hidden_dim))
        self.reduction.build((None, None, None, 4 * self.hidden_dim))

    def call(self, x):
        height, width = _size(x, 1), _size(x, 2)
        static = isinstance(height, int) and isinstance(width, int)
        if not static or height % 2 or width % 2:
            x = ops.pad(x, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]])
        height, width = height + height % 2, width + width % 2
        x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, self.hidden_dim))
        # (B, h, w, column offset, row offset, D): the flattened last three axes
        # are the four neighbours in the reference's order.
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 4, 2, 5)), (-1, height // 2, width // 2, 4 * self.hidden_dim))
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        half = [None if s is None else math.ceil(s / 2) for s in input_shape[1:3]]
        return (input_shape[0], *half, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"hidden_dim": self.hidden_dim, "output_dim": self.output_dim, "layer_norm_epsilon": self.layer_norm_epsilon}
        )
        return config
