"""MViTv2's block: pooling attention with decomposed relative positions and
residual pooling (Li et al., CVPR 2022, section 3; Fan et al., ICCV 2021).

Maps are `(B, H, W, C)` with H and W fixed when the layer is built: the
relative-position tables and their index depend on the pooled sizes.
"""

import keras
import numpy as np
from keras import ops

from keras_vit.backend.gelu import gelu
from keras_vit.layers.drop_path import DropPath
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


def pooled_size(size, stride, kernel=3):
    """The output length of a `kernel` convolution with stride `stride` and
    padding `kernel // 2` on each side (torch's `Conv2d` / `MaxPool2d`)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def relative_distances(q_size, k_size):
    """`(q, k)` int: the row of the relative-position table for each
    (query, key) pair along one axis, with the two sizes' strides scaled to
    the finer one (`cal_rel_pos_type` of the official code and timm):
    `q_i * max(k/q, 1) - k_j * max(q/k, 1) + (k - 1) * max(q/k, 1)`,
    truncated to an int."""
    q_ratio = np.float32(max(k_size / q_size, 1.0))
    k_ratio = np.float32(max(q_size / k_size, 1.0))
    distance = (
        np.arange(q_size, dtype=np.float32)[:, None] * q_ratio
        - np.arange(k_size, dtype=np.float32)[None, :] * k_ratio
        + np.float32(k_size - 1) * k_ratio
    )
    return distance.astype("int32")


def _pad_hw(x, pad):
    return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


@keras.saving.register_keras_serializable(package="keras_vit")
class MViTAttention(keras.layers.Layer):
    """Multi-head pooling attention (MViTv2).

    Queries, keys and values are each pooled by a depthwise 3x3 convolution
    (one kernel shared by the heads, no bias, padding 1; queries with
    `q_stride`, keys and values with `kv_stride`) and LayerNorm'd over the
    head width; then `softmax(Q K^T / sqrt(d) + R) V + Q`, with `R` the
    decomposed relative position term `Q . Rh[dist_h] + Q . Rw[dist_w]`
    (tables of `2 max(q, k) - 1` rows per axis, head width columns) and the
    residual pooling connection `+ Q`.

    Weight layout (timm's `MultiScaleAttention`): `qkv` `(D_in, 3 D)`,
    `proj` `(D, D)`, `pool_q/k/v` depthwise kernels `(3, 3, d, 1)`, `norm_q/k/v`
    over d = D / heads, `rel_pos_h`/`rel_pos_w` `(2 max(q, k) - 1, d)`.

    Args:
        input_dim: int, D_in.
        hidden_dim: int, D (the attention width).
        num_heads: int, must divide D.
        q_stride, kv_stride: ints, the pooling strides.
        qkv_bias: bool.
        layer_norm_epsilon: float (1e-6).
        residual_pooling: bool (MViTv2: True).

    Call arguments:
        x: `(B, H, W, D_in)`, H and W as built.

    Returns:
        `(B, H', W', D)` with `H' = ceil(H / q_stride)`.
    """

    def __init__(
        self, input_dim, hidden_dim, num_heads, q_stride=1, kv_stride=1, qkv_bias=True, layer_norm_epsilon=1e-6,
        residual_pooling=True, **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_dim. Received: num_heads={num_heads}, hidden_dim={hidden_dim}."
            )
        self.q_stride = check_positive_int("q_stride", q_stride)
        self.kv_stride = check_positive_int("kv_stride", kv_stride)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.residual_pooling = bool(residual_pooling)
        self.head_dim = self.hidden_dim // self.num_heads
        policy = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.qkv = keras.layers.Dense(3 * self.hidden_dim, use_bias=self.qkv_bias, kernel_initializer=init, dtype=policy, name="qkv")
        self.proj = keras.layers.Dense(self.hidden_dim, kernel_initializer=init, dtype=policy, name="proj")
        for part in ("q", "k", "v"):
            setattr(self, f"pool_{part}", keras.layers.DepthwiseConv2D(
                3, strides=self.q_stride if part == "q" else self.kv_stride, padding="valid", use_bias=False,
                dtype=policy, name=f"pool_{part}",
            ))
            setattr(self, f"norm_{part}", keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, dtype=policy, name=f"norm_{part}"
            ))

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None:
            raise ValueError(
                f"MViTAttention needs a known height and width (its relative positions depend on them). "
                f"Received: input_shape={input_shape}"
            )
        self.input_size = (int(height), int(width))
        self.q_size = tuple(pooled_size(s, self.q_stride) for s in self.input_size)
        self.kv_size = tuple(pooled_size(s, self.kv_stride) for s in self.input_size)
        # The reference's table length (timm: the first axis's size // stride).
        length = 2 * max(self.input_size[0] // self.q_stride, self.input_size[0] // self.kv_stride) - 1
        self._dist_h = relative_distances(self.q_size[0], self.kv_size[0])
        self._dist_w = relative_distances(self.q_size[1], self.kv_size[1])
        needed = int(max(self._dist_h.max(), self._dist_w.max())) + 1
        if needed > length:
            raise ValueError(
                f"MViTAttention at {self.input_size} with strides q={self.q_stride}, kv={self.kv_stride} needs "
                f"{needed} relative positions, the reference's table has {length}: use a square input whose "
                "side divides by the strides."
            )
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.rel_pos_h = self.add_weight(shape=(length, self.head_dim), initializer=init, name="rel_pos_h")
        self.rel_pos_w = self.add_weight(shape=(length, self.head_dim), initializer=init, name="rel_pos_w")
        self.qkv.build(input_shape)
        self.proj.build((None, self.hidden_dim))
        for part in ("q", "k", "v"):
            getattr(self, f"pool_{part}").build((None, None, None, self.head_dim))
            getattr(self, f"norm_{part}").build((None, self.head_dim))

    def _pool(self, part, x):
        """`(B, H, W, heads, d)` -> `(B, heads, h, w, d)` pooled and normalised.

        The kernel is shared by the heads (the reference convolves each head
        as a batch item); here every head's channels are convolved at once
        with the kernel repeated per head, which keeps the batch axis apart
        (an exporter cannot follow a batch merged with the heads)."""
        height, width = self.input_size
        pool = getattr(self, f"pool_{part}")
        x = _pad_hw(ops.reshape(x, (-1, height, width, self.num_heads * self.head_dim)), 1)
        kernel = ops.tile(ops.cast(pool.kernel, x.dtype), (1, 1, self.num_heads, 1))
        x = ops.depthwise_conv(x, kernel, strides=pool.strides, padding="valid")
        size = self.q_size if part == "q" else self.kv_size
        x = getattr(self, f"norm_{part}")(ops.reshape(x, (-1, size[0], size[1], self.num_heads, self.head_dim)))
        return ops.transpose(x, (0, 3, 1, 2, 4))

    def call(self, x, training=None, return_attention_scores=False):
        height, width = self.input_size
        qkv = ops.reshape(self.qkv(x), (-1, height, width, 3, self.num_heads, self.head_dim))
        query, key, value = (self._pool(part, t) for part, t in zip("qkv", ops.unstack(qkv, 3, axis=3)))
        (qh, qw), (kh, kw) = self.q_size, self.kv_size
        heads, d = self.num_heads, self.head_dim
        q_flat = ops.reshape(query, (-1, heads, qh * qw, d))
        k_flat = ops.reshape(key, (-1, heads, kh * kw, d))
        v_flat = ops.reshape(value, (-1, heads, kh * kw, d))
        logits = ops.einsum("bnqd,bnkd->bnqk", q_flat * (d**-0.5), k_flat)
        rel_h = ops.take(self.rel_pos_h, self._dist_h, axis=0)  # (qh, kh, d)
        rel_w = ops.take(self.rel_pos_w, self._dist_w, axis=0)  # (qw, kw, d)
        term_h = ops.einsum("bnhwc,hkc->bnhwk", query, ops.cast(rel_h, query.dtype))
        term_w = ops.einsum("bnhwc,wkc->bnhwk", query, ops.cast(rel_w, query.dtype))
        logits = ops.reshape(logits, (-1, heads, qh, qw, kh, kw)) + term_h[..., :, None] + term_w[..., None, :]
        logits = ops.reshape(ops.cast(logits, "float32"), (-1, heads, qh * qw, kh * kw))
        scores = ops.cast(ops.softmax(logits, axis=-1), query.dtype)
        out = ops.einsum("bnqk,bnkd->bnqd", scores, v_flat)
        if self.residual_pooling:
            out = out + q_flat
        out = ops.reshape(ops.transpose(ops.reshape(out, (-1, heads, qh, qw, d)), (0, 2, 3, 1, 4)), (-1, qh, qw, self.hidden_dim))
        out = self.proj(out)
        return (out, scores) if return_attention_scores else out

    def compute_output_shape(self, input_shape):
        size = [None if s is None else pooled_size(s, self.q_stride) for s in input_shape[1:3]]
        return (input_shape[0], *size, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "q_stride": self.q_stride,
                "kv_stride": self.kv_stride,
                "qkv_bias": self.qkv_bias,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "residual_pooling": self.residual_pooling,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class MViTBlock(keras.layers.Layer):
    """One MViTv2 block (timm's `MultiScaleBlock`):

        y = LN(x)
        x = pool(x or Linear(y)) + DropPath(PoolingAttention(y))
        y = LN(x)
        x = (x or Linear(y)) + DropPath(MLP(y))

    The shortcut is max-pooled (kernel `q_stride + 1`, padding half of it)
    when the queries are; when the width changes, a Linear on the normalised
    input projects it, in the attention (`expand_attention=True`: T, S, B)
    or in the MLP (`False`: L, whose attention keeps the input width).

    Args:
        input_dim, output_dim: ints.
        num_heads: int.
        q_stride, kv_stride: ints.
        expand_attention: bool.
        mlp_ratio: float (4).
        qkv_bias: bool.
        drop_path_rate: float.
        layer_norm_epsilon: float (1e-6).

    Call arguments:
        x: `(B, H, W, input_dim)`.

    Returns:
        `(B, ceil(H / q_stride), ceil(W / q_stride), output_dim)`.
    """

    def __init__(
        self, input_dim, output_dim, num_heads, q_stride=1, kv_stride=1, expand_attention=True, mlp_ratio=4.0,
        qkv_bias=True, drop_path_rate=0.0, layer_norm_epsilon=1e-6, **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.q_stride = check_positive_int("q_stride", q_stride)
        self.kv_stride = check_positive_int("kv_stride", kv_stride)
        self.expand_attention = bool(expand_attention)
        if not isinstance(mlp_ratio, (int, float)) or isinstance(mlp_ratio, bool) or not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be a positive number (MViTv2: 4). Received: mlp_ratio={mlp_ratio!r}")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        policy = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        attention_dim = self.output_dim if self.expand_attention else self.input_dim
        self.attention_dim = attention_dim
        projected = self.input_dim != self.output_dim
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="norm1")
        self.attention = MViTAttention(
            self.input_dim, attention_dim, self.num_heads, self.q_stride, self.kv_stride, self.qkv_bias,
            self.layer_norm_epsilon, dtype=policy, name="attention",
        )
        self.shortcut_proj_attn = (
            keras.layers.Dense(self.output_dim, kernel_initializer=init, dtype=policy, name="shortcut_proj_attn")
            if projected and self.expand_attention else None
        )
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="norm2")
        self.shortcut_proj_mlp = (
            keras.layers.Dense(self.output_dim, kernel_initializer=init, dtype=policy, name="shortcut_proj_mlp")
            if projected and not self.expand_attention else None
        )
        self.fc1 = keras.layers.Dense(int(attention_dim * self.mlp_ratio), kernel_initializer=init, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(self.output_dim, kernel_initializer=init, dtype=policy, name="fc2")
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attention.build(input_shape)
        if self.shortcut_proj_attn is not None:
            self.shortcut_proj_attn.build(input_shape)
        self.norm2.build((None, self.attention_dim))
        if self.shortcut_proj_mlp is not None:
            self.shortcut_proj_mlp.build((None, self.attention_dim))
        self.fc1.build((None, self.attention_dim))
        self.fc2.build((None, self.fc1.units))

    def _pool_shortcut(self, x):
        if self.q_stride == 1:
            return x
        kernel = self.q_stride + 1
        pad = kernel // 2
        height, width = x.shape[1], x.shape[2]
        out_h, out_w = pooled_size(height, self.q_stride, kernel), pooled_size(width, self.q_stride, kernel)
        # torch's MaxPool2d pads with -inf: the padding is never the maximum.
        x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], constant_values=float("-inf"))
        # The max of the kernel's strided views, not ops.max_pool: jax2onnx's
        # MaxPool of it does not run in onnxruntime ("Unsupported pooling size").
        stride = self.q_stride
        pooled = None
        for i in range(kernel):
            for j in range(kernel):
                view = x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]
                pooled = view if pooled is None else ops.maximum(pooled, view)
        return pooled

    def call(self, x, training=None):
        y = self.norm1(x)
        shortcut = x if self.shortcut_proj_attn is None else self.shortcut_proj_attn(y)
        x = self._pool_shortcut(shortcut) + self.drop_path(self.attention(y, training=training), training=training)
        y = self.norm2(x)
        shortcut = x if self.shortcut_proj_mlp is None else self.shortcut_proj_mlp(y)
        return shortcut + self.drop_path(self.fc2(gelu(self.fc1(y))), training=training)

    def compute_output_shape(self, input_shape):
        size = [None if s is None else pooled_size(s, self.q_stride, self.q_stride + 1 if self.q_stride > 1 else 1) for s in input_shape[1:3]]
        return (input_shape[0], *size, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "num_heads": self.num_heads,
                "q_stride": self.q_stride,
                "kv_stride": self.kv_stride,
                "expand_attention": self.expand_attention,
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "drop_path_rate": self.drop_path_rate,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
