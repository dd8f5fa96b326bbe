import keras

from keras_vit.backbones.backbone import Backbone
from keras_vit.backbones.backbone import FeaturePyramid
from keras_vit.layers.conv2d import Conv2D
from keras_vit.layers.mvit_block import MViTBlock
from keras_vit.utils.serialization import with_dtype_policy
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


def _per_stage(name, value, stages, double):
    """An int (doubling per stage when `double`) or one positive int per stage."""
    if isinstance(value, (tuple, list)):
        if len(value) != stages:
            raise ValueError(f"{name} must be an int or {stages} ints (one per stage). Received: {name}={value!r}")
        return tuple(check_positive_int(name, v) for v in value)
    value = check_positive_int(name, value)
    return tuple(value * 2**i if double else value for i in range(stages))


def stage_layout(depths, widths, heads, expand_attention, kv_stride):
    """Every block's `(input_dim, output_dim, heads, q_stride, kv_stride)`,
    stage by stage (timm's `MultiScaleVit`): the queries pooled by 2 at
    each stage start after the first, the keys and values by `kv_stride`
    halved at each such start (4, 2, 1, 1); the width changes in a stage's
    first block (`expand_attention`) or its last (MViTv2-L)."""
    layout = []
    dim = widths[0]
    kv = kv_stride
    for stage, depth in enumerate(depths):
        q = 1 if stage == 0 else 2
        if q > 1:
            kv = max(kv // q, 1)
        out = widths[stage] if expand_attention else widths[min(stage + 1, len(depths) - 1)]
        blocks = []
        for index in range(depth):
            block_out = out if expand_attention or index == depth - 1 else dim
            blocks.append((dim, block_out, heads[stage], q if index == 0 else 1, kv))
            dim = block_out
        layout.append(blocks)
    return layout


@keras.saving.register_keras_serializable(package="keras_vit")
class MViTBackbone(FeaturePyramid, Backbone, keras.Model):
    """Multiscale Vision Transformer v2 (Li et al., CVPR 2022): a
    hierarchical transformer of pooling attention, without class token.

    A 7x7 stride-4 convolution embeds the image; four stages of MViTv2
    blocks follow. Each stage after the first starts with a block whose
    queries (and shortcut) are pooled by 2, halving the resolution; every
    block pools its keys and values (stride 4, 2, 1, 1 by stage: the
    adaptive KV stride), adds decomposed relative positions, and adds the
    pooled queries back to the attention output (residual pooling). The
    width and head count double per stage. A final LayerNorm ends it.

    Features: `"stage_1"` ... `"stage_4"` (strides 4 to 32; widths D, 2D,
    4D, 8D) and `"final_norm"` (the output); `pyramid_outputs` gives the
    stages as `"P2"`...`"P5"`.

    Args:
        image_shape: `(S, S, C)`: square, S a multiple of 32 (for four
            stages), as the reference's relative-position tables assume.
        hidden_dim: int, the first stage's width D (doubling per stage), or
            one width per stage.
        depths: blocks per stage (T `(1, 2, 5, 2)`, S `(1, 2, 11, 2)`, B
            `(2, 3, 16, 3)`, L `(2, 6, 36, 4)`).
        num_heads: int, the first stage's heads (doubling), or one per stage.
        expand_attention: bool: the width changes in a stage's first block's
            attention (T, S, B), or in its last block's MLP (False: L).
        mlp_ratio: float (4).
        qkv_bias: bool.
        kv_stride: int, the first stage's key/value pooling stride (4).
        drop_path_rate: float, stochastic depth of the last block, linear
            from 0 over all blocks.
        layer_norm_epsilon: float (1e-6).
        dtype: dtype policy.

    Example:
    >>> backbone = MViTBackbone(image_shape=(64, 64, 3), hidden_dim=8, depths=(1, 1), num_heads=1)
    >>> tuple(backbone(keras.ops.zeros((1, 64, 64, 3))).shape)
    (1, 8, 8, 16)
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        hidden_dim=96,
        depths=(1, 2, 5, 2),
        num_heads=1,
        expand_attention=True,
        mlp_ratio=4.0,
        qkv_bias=True,
        kv_stride=4,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("MViTBackbone", kwargs)
        if not isinstance(depths, (tuple, list)) or not depths:
            raise ValueError(f"depths must be one positive int per stage. Received: depths={depths!r}")
        depths = tuple(check_positive_int("depths", d) for d in depths)
        stages = len(depths)
        widths = _per_stage("hidden_dim", hidden_dim, stages, double=True)
        heads = _per_stage("num_heads", num_heads, stages, double=True)
        kv_stride = check_positive_int("kv_stride", kv_stride)
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
            raise ValueError(f"image_shape must be (height, width, channels). Received: image_shape={image_shape!r}")
        image_shape = tuple(check_positive_int("image_shape", s) if s is not None else None for s in image_shape)
        multiple = 4 * max(2 ** (stages - 1), kv_stride)
        if image_shape[0] is None or image_shape[0] != image_shape[1] or image_shape[0] % multiple:
            raise ValueError(
                f"image_shape must be square with a side that is a multiple of {multiple} (the relative positions "
                f"of MViTv2 are tables for one square size, as in the reference). Received: image_shape={image_shape!r}"
            )
        drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        layout = stage_layout(depths, widths, heads, bool(expand_attention), kv_stride)
        for blocks in layout:
            for dim_in, dim_out, h, _, _ in blocks:
                width = dim_out if expand_attention else dim_in
                if width % h:
                    raise ValueError(
                        f"num_heads ({h}) must divide the attention width ({width}). Received: hidden_dim={hidden_dim!r}, "
                        f"num_heads={num_heads!r}."
                    )
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]

        inputs = keras.Input(shape=image_shape, name="images")
        x = keras.layers.ZeroPadding2D(3, dtype=dtype, name="patch_padding")(inputs)
        x = Conv2D(widths[0], 7, strides=4, padding="valid", dtype=dtype, name="patch_embedding")(x)
        features = {}
        index = 0
        for stage, blocks in enumerate(layout, start=1):
            for block, (dim_in, dim_out, h, q, kv) in enumerate(blocks):
                x = MViTBlock(
                    dim_in, dim_out, h, q_stride=q, kv_stride=kv, expand_attention=expand_attention,
                    mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path_rate=rates[index],
                    layer_norm_epsilon=layer_norm_epsilon, dtype=dtype, name=f"stage_{stage}_block_{block}",
                )(x)
                index += 1
            features[f"stage_{stage}"] = x
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm")(x)
        features["final_norm"] = x
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

        self.image_shape = image_shape
        self.hidden_dim = hidden_dim if isinstance(hidden_dim, int) else widths
        self.depths = depths
        self.num_heads = num_heads if isinstance(num_heads, int) else heads
        self.stage_widths = widths
        self.stage_heads = heads
        self.expand_attention = bool(expand_attention)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.kv_stride = kv_stride
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.layout = layout
        self._feature_tensors = features
        self._pyramid = {f"P{stage + 1}": f"stage_{stage}" for stage in range(1, min(stages, 4) + 1)}

    @property
    def output_dim(self):
        return self.layout[-1][-1][1]

    def blocks(self):
        """The MViTv2 blocks, in network order."""
        return [layer for layer in self.layers if isinstance(layer, MViTBlock)]

    @staticmethod
    def get_layout_map(device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"):
        """A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`
        (JAX), as `SwinBackbone.get_layout_map`: every block's `qkv`/`fc1`
        split by columns and `proj`/`fc2` by rows over the model axis; the
        pooling, norms and relative positions replicated."""
        from keras_vit.backbones.backbone import block_layout_map

        return block_layout_map(device_mesh, model_parallel_dim_name, data_parallel_dim_name)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "image_shape": self.image_shape,
            "hidden_dim": self.hidden_dim,
            "depths": self.depths,
            "num_heads": self.num_heads,
            "expand_attention": self.expand_attention,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "kv_stride": self.kv_stride,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }

    @classmethod
    def from_config(cls, config):
        config = with_dtype_policy(config)
        for key in ("hidden_dim", "num_heads"):
            if isinstance(config.get(key), list):
                config[key] = tuple(config[key])
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """The backbone of an MViTv2 preset (`"mvitv2_t"`, ...), a preset
        directory or a checkpoint."""
        return super().from_preset(preset, load_weights=load_weights, **overrides)
