"""ViTDet's layers (Li, Mao, Girshick and He, ECCV 2022; detectron2
`modeling/backbone/vit.py` and `utils.py`): the resized absolute position
embedding, attention in windows or over the whole map with decomposed
relative positions, the optional residual convolution block, and the levels
of the simple feature pyramid.

Maps are `(B, H, W, C)` with H and W fixed when a layer is built: the
position resizes and the relative-position lookups are constants of the
size, computed once in numpy (so they are the same on every backend and
export as constants).
"""

import keras
from keras import ops

from keras_vit.backend.gelu import gelu
from keras_vit.layers.conv2d import Conv2D
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.mvit_block import relative_distances
from keras_vit.ops.interpolation import interpolation_matrix
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate

PYRAMID_SCALES = (4.0, 2.0, 1.0, 0.5)


def _static_hw(layer, input_shape, axes=(1, 2)):
    height, width = (input_shape[a] for a in axes)
    if height is None or width is None:
        raise ValueError(
            f"{type(layer).__name__} needs a known height and width (its position tables are resized for them "
            f"once). Received: input_shape={input_shape}"
        )
    return int(height), int(width)


def relative_position_lookup(table_length, q_size, k_size):
    """`(matrix, index)`: the rows of a relative-position table of
    `table_length` rows that each (query, key) pair along one axis reads,
    as detectron2's `get_rel_pos`: the table linearly interpolated
    (`F.interpolate(mode="linear", align_corners=False)`) to `2 max(q, k) - 1`
    rows when its length differs, then indexed by the scaled distance.

    Returns `matrix` `(2 max(q, k) - 1, table_length)` float32 (the resize;
    None when the table has the needed length) and `index` `(q, k)` int32,
    so that `take(matrix @ table, index)` is `get_rel_pos(q, k, table)`."""
    length = 2 * max(q_size, k_size) - 1
    matrix = None
    if length != table_length:
        matrix = interpolation_matrix(table_length, length, method="bilinear", align_corners=False).astype("float32")
    return matrix, relative_distances(q_size, k_size)


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTDetPositionEmbedding(keras.layers.Layer):
    """Adds absolute position embeddings pre-trained on a square grid, resized
    bicubically to the input's grid (detectron2's `get_abs_pos`:
    `F.interpolate(mode="bicubic", align_corners=False)`, a = -0.75).

    The weight keeps the pre-training layout, `(1 + g^2, D)` with the class
    token's row first (as detectron2 and transformers store it); that row is
    not used.

    Args:
        grid_size: int g, the pre-training grid (224 / 16 = 14).
        class_token: bool, whether the weight has the class token's row.

    Call arguments:
        x: `(B, H, W, D)`.
    """

    def __init__(self, grid_size=14, class_token=True, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = check_positive_int("grid_size", grid_size)
        self.class_token = bool(class_token)

    def build(self, input_shape):
        self._hw = _static_hw(self, input_shape)
        dim = input_shape[-1]
        self.position_embedding = self.add_weight(
            shape=(int(self.class_token) + self.grid_size**2, dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="position_embedding",
        )
        g = self.grid_size
        self._resize_h = interpolation_matrix(g, self._hw[0], "bicubic").astype("float32")
        self._resize_w = interpolation_matrix(g, self._hw[1], "bicubic").astype("float32")

    def resized(self):
        """The `(H, W, D)` embedding added to the input."""
        g = self.grid_size
        # In float32 (under mixed precision the variable reads as the compute dtype).
        grid = ops.reshape(ops.cast(self.position_embedding, "float32")[int(self.class_token):], (g, g, -1))
        if self._hw == (g, g):
            return grid
        grid = ops.einsum("yi,ijd->yjd", self._resize_h, grid)
        return ops.einsum("xj,yjd->yxd", self._resize_w, grid)

    def call(self, x):
        return x + ops.cast(self.resized(), x.dtype)[None]

    def get_config(self):
        config = super().get_config()
        config.update({"grid_size": self.grid_size, "class_token": self.class_token})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTDetAttention(keras.layers.Layer):
    """Multi-head self-attention over each window (or the whole map) of
    `(B, N, h, w, D)` inputs (N windows of h x w tokens), with detectron2's
    decomposed relative positions:
    `softmax(Q K^T / sqrt(d) + Q . Rh[dist_h] + Q . Rw[dist_w]) V`.

    The tables `rel_pos_h` `(2 th - 1, d)` and `rel_pos_w` `(2 tw - 1, d)`
    belong to a `(th, tw)` = `rel_pos_size` window; for another h x w they
    are linearly resized (`relative_position_lookup`).

    Weights (detectron2's `Attention`): `qkv` `(D, 3D)` (q, k, v, each head
    by head), `proj` `(D, D)`, `rel_pos_h`, `rel_pos_w`.

    Args:
        hidden_dim: int D.
        num_heads: int, divides D.
        qkv_bias: bool.
        use_rel_pos: bool (ViTDet: True).
        rel_pos_size: `(th, tw)`, the window the tables are sized for.

    Returns:
        `(B, N, h, w, D)`.
    """

    def __init__(self, hidden_dim, num_heads, qkv_bias=True, use_rel_pos=True, rel_pos_size=(14, 14), **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_dim. Received: num_heads={num_heads}, hidden_dim={hidden_dim}."
            )
        self.head_dim = self.hidden_dim // self.num_heads
        self.qkv_bias = bool(qkv_bias)
        self.use_rel_pos = bool(use_rel_pos)
        if not isinstance(rel_pos_size, (tuple, list)) or len(rel_pos_size) != 2:
            raise ValueError(f"rel_pos_size must be (height, width). Received: rel_pos_size={rel_pos_size!r}")
        self.rel_pos_size = tuple(check_positive_int("rel_pos_size", s) for s in rel_pos_size)
        policy = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.qkv = keras.layers.Dense(3 * self.hidden_dim, use_bias=self.qkv_bias, kernel_initializer=init, dtype=policy, name="qkv")
        self.proj = keras.layers.Dense(self.hidden_dim, kernel_initializer=init, dtype=policy, name="proj")

    def build(self, input_shape):
        self._hw = _static_hw(self, input_shape, axes=(2, 3))
        if self.use_rel_pos:
            # detectron2 initialises the tables with zeros (rel_pos_zero_init).
            th, tw = self.rel_pos_size
            self.rel_pos_h = self.add_weight(shape=(2 * th - 1, self.head_dim), initializer="zeros", name="rel_pos_h")
            self.rel_pos_w = self.add_weight(shape=(2 * tw - 1, self.head_dim), initializer="zeros", name="rel_pos_w")
            self._lookup_h = relative_position_lookup(2 * th - 1, self._hw[0], self._hw[0])
            self._lookup_w = relative_position_lookup(2 * tw - 1, self._hw[1], self._hw[1])
        self.qkv.build((None, self.hidden_dim))
        self.proj.build((None, self.hidden_dim))

    def relative_positions(self, table, lookup, dtype):
        matrix, index = lookup
        resized = table if matrix is None else ops.matmul(matrix, ops.cast(table, "float32"))
        return ops.cast(ops.take(resized, index, axis=0), dtype)

    def call(self, x, return_attention_scores=False):
        h, w = self._hw
        windows = x.shape[1]
        heads, d = self.num_heads, self.head_dim
        qkv = ops.reshape(self.qkv(x), (-1, windows, h * w, 3, heads, d))
        qkv = ops.transpose(qkv, (3, 0, 1, 4, 2, 5))  # (3, B, N, heads, hw, d)
        query, key, value = qkv[0], qkv[1], qkv[2]
        logits = ops.einsum("bnhqd,bnhkd->bnhqk", query * (d**-0.5), key)
        if self.use_rel_pos:
            rel_h = self.relative_positions(self.rel_pos_h, self._lookup_h, query.dtype)  # (h, h, d)
            rel_w = self.relative_positions(self.rel_pos_w, self._lookup_w, query.dtype)  # (w, w, d)
            grid = ops.reshape(query, (-1, windows, heads, h, w, d))
            term_h = ops.einsum("bnmyxc,ykc->bnmyxk", grid, rel_h)
            term_w = ops.einsum("bnmyxc,xkc->bnmyxk", grid, rel_w)
            logits = ops.reshape(logits, (-1, windows, heads, h, w, h, w))
            logits = logits + term_h[..., :, None] + term_w[..., None, :]
            logits = ops.reshape(logits, (-1, windows, heads, h * w, h * w))
        scores = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), value.dtype)
        out = ops.einsum("bnhqk,bnhkd->bnqhd", scores, value)
        out = self.proj(ops.reshape(out, (-1, windows, h, w, self.hidden_dim)))
        return (out, scores) if return_attention_scores else out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "qkv_bias": self.qkv_bias,
                "use_rel_pos": self.use_rel_pos,
                "rel_pos_size": self.rel_pos_size,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTDetResidualBlock(keras.layers.Layer):
    """The optional residual convolution block after some ViTDet blocks
    (detectron2's `ResBottleneckBlock` with `norm="LN"`): `x + LN(conv1x1(
    GELU(LN(conv3x3(GELU(LN(conv1x1(x))))))))`, convolutions without bias,
    the bottleneck at half the width, the last LayerNorm's scale zero at
    initialisation (so the block starts as the identity).

    Args:
        hidden_dim: int D.
        layer_norm_epsilon: float (1e-6).
    """

    def __init__(self, hidden_dim, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        policy = self.dtype_policy
        middle = max(self.hidden_dim // 2, 1)
        init = keras.initializers.HeNormal()
        self.conv1 = Conv2D(middle, 1, use_bias=False, kernel_initializer=init, dtype=policy, name="conv1")
        self.conv2 = Conv2D(middle, 3, padding="same", use_bias=False, kernel_initializer=init, dtype=policy, name="conv2")
        self.conv3 = Conv2D(self.hidden_dim, 1, use_bias=False, kernel_initializer=init, dtype=policy, name="conv3")
        self.norm1, self.norm2 = (
            keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name=f"norm{i}") for i in (1, 2)
        )
        self.norm3 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, gamma_initializer="zeros", dtype=policy, name="norm3"
        )

    def build(self, input_shape):
        middle = self.conv1.filters
        self.conv1.build((None, None, None, self.hidden_dim))
        self.conv2.build((None, None, None, middle))
        self.conv3.build((None, None, None, middle))
        self.norm1.build((None, middle))
        self.norm2.build((None, middle))
        self.norm3.build((None, self.hidden_dim))

    def call(self, x):
        y = gelu(self.norm1(self.conv1(x)))
        y = gelu(self.norm2(self.conv2(y)))
        return x + self.norm3(self.conv3(y))

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "layer_norm_epsilon": self.layer_norm_epsilon})
        return config


def window_partition(x, window_size, height, width):
    """`(B, H, W, C)` -> `(B, nW, w, w, C)`: zero-padded at the bottom and
    right to a multiple of the window (detectron2's `window_partition`; the
    padding is not masked in the attention), windows in row-major order."""
    pad_h, pad_w = (-height) % window_size, (-width) % window_size
    if pad_h or pad_w:
        x = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    n_h, n_w = (height + pad_h) // window_size, (width + pad_w) // window_size
    channels = x.shape[-1]
    x = ops.reshape(x, (-1, n_h, window_size, n_w, window_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, n_h * n_w, window_size, window_size, channels))


def window_unpartition(windows, window_size, height, width):
    """The inverse of `window_partition`, the padding cropped."""
    n_h, n_w = -(-height // window_size), -(-width // window_size)
    channels = windows.shape[-1]
    x = ops.reshape(windows, (-1, n_h, n_w, window_size, window_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    x = ops.reshape(x, (-1, n_h * window_size, n_w * window_size, channels))
    if n_h * window_size != height or n_w * window_size != width:
        x = x[:, :height, :width, :]
    return x


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTDetBlock(keras.layers.Layer):
    """One ViTDet block (detectron2's `Block`):

        x = x + DropPath(Attention(LN(x)))      # in windows, or global
        x = x + DropPath(MLP(LN(x)))
        x = ResidualBlock(x)                    # when use_residual_block

    Window blocks pad the map with zeros to a multiple of `window_size`,
    attend within each window and crop the padding (`window_size=0`: the
    whole map, a global block).

    Args:
        hidden_dim: int D.
        num_heads: int.
        window_size: int, 0 for global attention.
        rel_pos_size: `(th, tw)`, the size the relative tables are for
            (the window, or a global block's training grid).
        mlp_ratio: float (4).
        qkv_bias: bool.
        use_rel_pos: bool.
        drop_path_rate: float.
        use_residual_block: bool.
        layer_norm_epsilon: float (1e-6).

    Call arguments:
        x: `(B, H, W, D)`, H and W as built.
    """

    def __init__(
        self, hidden_dim, num_heads, window_size=0, rel_pos_size=(14, 14), mlp_ratio=4.0, qkv_bias=True,
        use_rel_pos=True, drop_path_rate=0.0, use_residual_block=False, layer_norm_epsilon=1e-6, **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if not isinstance(window_size, int) or isinstance(window_size, bool) or window_size < 0:
            raise ValueError(f"window_size must be an int >= 0 (0: global attention). Received: window_size={window_size!r}")
        self.window_size = window_size
        if not isinstance(mlp_ratio, (int, float)) or isinstance(mlp_ratio, bool) or not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be a positive number (ViTDet: 4). Received: mlp_ratio={mlp_ratio!r}")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.use_rel_pos = bool(use_rel_pos)
        self.drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        self.use_residual_block = bool(use_residual_block)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        policy = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="norm1")
        self.attention = ViTDetAttention(
            self.hidden_dim, self.num_heads, self.qkv_bias, self.use_rel_pos, rel_pos_size, dtype=policy, name="attention"
        )
        self.rel_pos_size = self.attention.rel_pos_size
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="norm2")
        self.fc1 = keras.layers.Dense(int(self.hidden_dim * self.mlp_ratio), kernel_initializer=init, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(self.hidden_dim, kernel_initializer=init, dtype=policy, name="fc2")
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)
        self.residual = (
            ViTDetResidualBlock(self.hidden_dim, self.layer_norm_epsilon, dtype=policy, name="residual")
            if self.use_residual_block else None
        )

    def build(self, input_shape):
        self._hw = _static_hw(self, input_shape)
        self.norm1.build(input_shape)
        size = (self.window_size,) * 2 if self.window_size else self._hw
        self.attention.build((None, None, *size, self.hidden_dim))
        self.norm2.build(input_shape)
        self.fc1.build((None, self.hidden_dim))
        self.fc2.build((None, self.fc1.units))
        if self.residual is not None:
            self.residual.build(input_shape)

    def _attend(self, y, return_attention_scores=False):
        height, width = self._hw
        if self.window_size:
            windows = window_partition(y, self.window_size, height, width)
        else:
            windows = y[:, None]
        out = self.attention(windows, return_attention_scores=return_attention_scores)
        out, scores = out if return_attention_scores else (out, None)
        out = window_unpartition(out, self.window_size, height, width) if self.window_size else out[:, 0]
        return out, scores

    def call(self, x, training=None, return_attention_scores=False):
        attended, scores = self._attend(self.norm1(x), return_attention_scores)
        x = x + self.drop_path(attended, training=training)
        x = x + self.drop_path(self.fc2(gelu(self.fc1(self.norm2(x)))), training=training)
        if self.residual is not None:
            x = self.residual(x)
        return (x, scores) if return_attention_scores else x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "window_size": self.window_size,
                "rel_pos_size": self.rel_pos_size,
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "use_rel_pos": self.use_rel_pos,
                "drop_path_rate": self.drop_path_rate,
                "use_residual_block": self.use_residual_block,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class ConvTranspose2x2(keras.layers.Layer):
    """`torch.nn.ConvTranspose2d(C_in, C_out, kernel_size=2, stride=2)`: each
    input pixel becomes a 2x2 block, `out[2i + a, 2j + b] = x[i, j] @ K[a, b]
    + bias`.

    Written as one matrix product and a depth-to-space reshape instead of
    `keras.layers.Conv2DTranspose`: with a stride equal to the kernel the
    blocks do not overlap, so this is exact, and it exports to ONNX from every
    backend as plain MatMul / Reshape. The kernel has Keras' transposed
    convolution layout `(2, 2, C_out, C_in)`.

    Args:
        filters: int C_out.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(2, 2, self.filters, channels), initializer=keras.initializers.HeNormal(), name="kernel"
        )
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, x):
        height, width = x.shape[1], x.shape[2]
        y = ops.einsum("nhwi,abci->nhawbc", x, ops.cast(self.kernel, x.dtype))
        y = ops.reshape(y, (-1, 2 * height, 2 * width, self.filters))
        return y + ops.cast(self.bias, y.dtype)

    def compute_output_shape(self, input_shape):
        size = [None if s is None else 2 * s for s in input_shape[1:3]]
        return (input_shape[0], *size, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class SimpleFeaturePyramidLevel(keras.layers.Layer):
    """One level of ViTDet's simple feature pyramid (detectron2's
    `SimpleFeaturePyramid` stage `simfp_{log2 stride}`), from the stride-16
    map of the plain ViT:

    - scale 4: ConvTranspose 2x2 (D -> D/2) -> LayerNorm -> GELU ->
      ConvTranspose 2x2 (D/2 -> D/4);
    - scale 2: ConvTranspose 2x2 (D -> D/2);
    - scale 1: the map itself;
    - scale 0.5: max-pool 2x2, stride 2;

    then a 1x1 and a 3x3 convolution (padding 1) to `output_dim`, each
    without bias and followed by a channel LayerNorm (epsilon 1e-6).

    Args:
        scale: one of 4, 2, 1, 0.5.
        output_dim: int (256).
        layer_norm_epsilon: float (1e-6).
    """

    def __init__(self, scale, output_dim=256, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if scale not in PYRAMID_SCALES or isinstance(scale, bool):
            raise ValueError(f"scale must be one of {PYRAMID_SCALES}. Received: scale={scale!r}")
        self.scale = float(scale)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    def build(self, input_shape):
        policy = self.dtype_policy
        dim = int(input_shape[-1])
        eps = self.layer_norm_epsilon
        self.upsample_1 = self.upsample_norm = self.upsample_2 = None
        if self.scale >= 2:
            if dim % (2 if self.scale == 2 else 4):
                raise ValueError(
                    f"SimpleFeaturePyramidLevel(scale={self.scale}) needs an input width divisible by "
                    f"{2 if self.scale == 2 else 4}. Received: input_shape={input_shape}"
                )
            self.upsample_1 = ConvTranspose2x2(dim // 2, dtype=policy, name="upsample_1")
            self.upsample_1.build(input_shape)
            dim //= 2
            if self.scale == 4:
                self.upsample_norm = keras.layers.LayerNormalization(epsilon=eps, dtype=policy, name="upsample_norm")
                self.upsample_norm.build((None, dim))
                self.upsample_2 = ConvTranspose2x2(dim // 2, dtype=policy, name="upsample_2")
                self.upsample_2.build((None, None, None, dim))
                dim //= 2
        init = keras.initializers.HeNormal()
        self.lateral = Conv2D(self.output_dim, 1, use_bias=False, kernel_initializer=init, dtype=policy, name="lateral")
        self.lateral.build((None, None, None, dim))
        self.lateral_norm = keras.layers.LayerNormalization(epsilon=eps, dtype=policy, name="lateral_norm")
        self.lateral_norm.build((None, self.output_dim))
        self.output_conv = Conv2D(
            self.output_dim, 3, padding="same", use_bias=False, kernel_initializer=init, dtype=policy, name="output_conv"
        )
        self.output_conv.build((None, None, None, self.output_dim))
        self.output_norm = keras.layers.LayerNormalization(epsilon=eps, dtype=policy, name="output_norm")
        self.output_norm.build((None, self.output_dim))

    def call(self, x):
        if self.upsample_1 is not None:
            x = self.upsample_1(x)
            if self.upsample_2 is not None:
                x = self.upsample_2(gelu(self.upsample_norm(x)))
        elif self.scale == 0.5:
            # torch's MaxPool2d(2, 2) floors odd sizes: the max of the four
            # strided views (also what every exporter carries).
            height, width = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
            x = x[:, :height, :width, :]
            x = ops.maximum(
                ops.maximum(x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :]), ops.maximum(x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :])
            )
        x = self.lateral_norm(self.lateral(x))
        return self.output_norm(self.output_conv(x))

    def compute_output_shape(self, input_shape):
        def size(s):
            return None if s is None else int(s * self.scale) if self.scale >= 1 else s // 2

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "output_dim": self.output_dim, "layer_norm_epsilon": self.layer_norm_epsilon})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class LastLevelMaxPool(keras.layers.Layer):
    """The pyramid's extra top level (detectron2's `LastLevelMaxPool`,
    `max_pool2d(p5, kernel_size=1, stride=2)`): every other pixel of P5."""

    def call(self, x):
        return x[:, ::2, ::2, :]

    def compute_output_shape(self, input_shape):
        size = [None if s is None else -(-s // 2) for s in input_shape[1:3]]
        return (input_shape[0], *size, input_shape[-1])
