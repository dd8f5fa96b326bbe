import keras

from keras_vit.backbones.backbone import Backbone
from keras_vit.backbones.backbone import FeaturePyramid
from keras_vit.layers.conv2d import Conv2D
from keras_vit.layers.vitdet_block import PYRAMID_SCALES
from keras_vit.layers.vitdet_block import LastLevelMaxPool
from keras_vit.layers.vitdet_block import SimpleFeaturePyramidLevel
from keras_vit.layers.vitdet_block import ViTDetBlock
from keras_vit.layers.vitdet_block import ViTDetPositionEmbedding
from keras_vit.utils.serialization import with_dtype_policy
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


def default_global_blocks(num_layers):
    """The paper's global-attention blocks: the last of each quarter
    (B 12 layers: 2, 5, 8, 11; L 24: 5, 11, 17, 23; H 32: 7, 15, 23, 31)."""
    if num_layers % 4:
        return (num_layers - 1,)
    quarter = num_layers // 4
    return tuple(quarter * (i + 1) - 1 for i in range(4))


def _indices(name, value, num_layers):
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be a list of block indices. Received: {name}={value!r}")
    indices = tuple(sorted(set(check_positive_int(name, i + 1) - 1 for i in value)))
    if any(i >= num_layers for i in indices):
        raise ValueError(f"{name} must be block indices in [0, {num_layers}). Received: {name}={value!r}")
    return indices


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTDetBackbone(FeaturePyramid, Backbone, keras.Model):
    """ViTDet (Li, Mao, Girshick and He, "Exploring Plain Vision Transformer
    Backbones for Object Detection", ECCV 2022): a plain ViT made a
    detection backbone, and the simple feature pyramid built from its last
    map alone.

    A 16x16 patch embedding gives a stride-16 map; absolute position
    embeddings pre-trained at 224 (14 x 14, class row dropped) are resized
    bicubically to its grid. Blocks attend within 14 x 14 windows (the map
    zero-padded to a multiple of the window, the padding not masked, then
    cropped) except a few global blocks (B: 2, 5, 8, 11); every block adds
    decomposed relative positions (`rel_pos_h`, `rel_pos_w`, linearly
    resized when the table's size differs from the map's). There is no
    final norm. The simple feature pyramid (`SimpleFeaturePyramidLevel`)
    turns the last map into strides 4, 8, 16, 32 by transposed convolutions
    or max-pooling, each followed by 1x1 and 3x3 convolutions to
    `pyramid_dim` channels with LayerNorms; P6 subsamples P5 by 2.

    Outputs: `{"P2": ..., "P6": ...}` (strides 4 ... 64, `pyramid_dim`
    channels), also `pyramid_outputs`. Features (`feature_extractor`):
    `"encoder_output"` (the plain stride-16 map, `hidden_dim` channels) and
    `"p2"`...`"p6"`.

    Args:
        image_shape: `(H, W, C)`, any fixed size (the paper: 1024 x 1024);
            not only square, H and W need not be multiples of the window.
        patch_size: int (16).
        hidden_dim: int D (B 768, L 1024, H 1280).
        num_layers: int (B 12, L 24, H 32).
        num_heads: int (B 12, L 16, H 16).
        mlp_ratio: float (4).
        qkv_bias: bool.
        window_size: int (14).
        global_attention_blocks: block indices with global attention;
            default the last of each quarter of the blocks.
        use_rel_pos: bool (True).
        rel_pos_grid: `(h, w)`, the map size the global blocks' relative
            tables are sized for (default: this `image_shape`'s grid, 64 x 64
            at 1024); kept when the input size changes, so weights load at any
            size.
        pretrain_image_size: int, the size of the absolute position grid's
            pre-training (224: a 14 x 14 grid).
        residual_blocks: block indices followed by a residual convolution
            block (none in the paper's default).
        pyramid_dim: int, the pyramid's channels (256).
        drop_path_rate: float, stochastic depth of the last block, linear
            from 0 (the paper: B 0.1, L 0.4, H 0.5).
        layer_norm_epsilon: float (1e-6).
        dtype: dtype policy.

    Example:
    >>> backbone = ViTDetBackbone(image_shape=(64, 96, 3), hidden_dim=16, num_layers=2, num_heads=2,
    ...     window_size=3, pyramid_dim=8)
    >>> {k: tuple(v.shape) for k, v in backbone(keras.ops.zeros((1, 64, 96, 3))).items()}["P5"]
    (1, 2, 3, 8)
    """

    fixed_input_size = True

    def __init__(
        self,
        image_shape=(1024, 1024, 3),
        patch_size=16,
        hidden_dim=768,
        num_layers=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        window_size=14,
        global_attention_blocks=None,
        use_rel_pos=True,
        rel_pos_grid=None,
        pretrain_image_size=224,
        residual_blocks=(),
        pyramid_dim=256,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("ViTDetBackbone", kwargs)
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3 or None in tuple(image_shape):
            raise ValueError(
                "image_shape must be a fixed (height, width, channels): the position embeddings and relative "
                f"positions are resized for one size. Received: image_shape={image_shape!r}"
            )
        image_shape = tuple(check_positive_int("image_shape", s) for s in image_shape)
        patch_size = check_positive_int("patch_size", patch_size)
        if image_shape[0] < 2 * patch_size or image_shape[1] < 2 * patch_size:
            raise ValueError(
                f"image_shape must be at least two patches ({2 * patch_size} pixels) on each side for the "
                f"pyramid's stride-32 level. Received: image_shape={image_shape!r}"
            )
        hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        num_layers = check_positive_int("num_layers", num_layers)
        num_heads = check_positive_int("num_heads", num_heads)
        if hidden_dim % num_heads:
            raise ValueError(f"num_heads must divide hidden_dim. Received: num_heads={num_heads}, hidden_dim={hidden_dim}.")
        if hidden_dim % 4:
            raise ValueError(
                f"hidden_dim must be a multiple of 4 (the pyramid's stride-4 level has hidden_dim / 4 channels). "
                f"Received: hidden_dim={hidden_dim}"
            )
        window_size = check_positive_int("window_size", window_size)
        if global_attention_blocks is None:
            global_attention_blocks = default_global_blocks(num_layers)
        global_attention_blocks = _indices("global_attention_blocks", global_attention_blocks, num_layers)
        residual_blocks = _indices("residual_blocks", residual_blocks, num_layers)
        grid = (image_shape[0] // patch_size, image_shape[1] // patch_size)
        if rel_pos_grid is None:
            rel_pos_grid = grid
        if not isinstance(rel_pos_grid, (tuple, list)) or len(rel_pos_grid) != 2:
            raise ValueError(f"rel_pos_grid must be (height, width) in patches. Received: rel_pos_grid={rel_pos_grid!r}")
        rel_pos_grid = tuple(check_positive_int("rel_pos_grid", s) for s in rel_pos_grid)
        pretrain_image_size = check_positive_int("pretrain_image_size", pretrain_image_size)
        if pretrain_image_size < patch_size:
            raise ValueError(
                f"pretrain_image_size must be at least one patch ({patch_size}). Received: "
                f"pretrain_image_size={pretrain_image_size}"
            )
        pyramid_dim = check_positive_int("pyramid_dim", pyramid_dim)
        drop_path_rate = check_rate("drop_path_rate", drop_path_rate)

        inputs = keras.Input(shape=image_shape, name="images")
        x = Conv2D(hidden_dim, patch_size, strides=patch_size, padding="valid", dtype=dtype, name="patch_embedding")(inputs)
        x = ViTDetPositionEmbedding(pretrain_image_size // patch_size, dtype=dtype, name="position_embedding")(x)
        for index in range(num_layers):
            is_global = index in global_attention_blocks
            x = ViTDetBlock(
                hidden_dim, num_heads, window_size=0 if is_global else window_size,
                rel_pos_size=rel_pos_grid if is_global else (window_size, window_size), mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, use_rel_pos=use_rel_pos,
                drop_path_rate=drop_path_rate * index / max(num_layers - 1, 1),
                use_residual_block=index in residual_blocks, layer_norm_epsilon=layer_norm_epsilon, dtype=dtype,
                name=f"block_{index}",
            )(x)
        features = {"encoder_output": x}
        for scale in PYRAMID_SCALES:
            stage = {4.0: 2, 2.0: 3, 1.0: 4, 0.5: 5}[scale]
            features[f"p{stage}"] = SimpleFeaturePyramidLevel(
                scale, pyramid_dim, layer_norm_epsilon, dtype=dtype, name=f"simfp_{stage}"
            )(x)
        features["p6"] = LastLevelMaxPool(dtype=dtype, name="p6")(features["p5"])
        outputs = {f"P{i}": features[f"p{i}"] for i in range(2, 7)}
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        self.image_shape = image_shape
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.window_size = window_size
        self.global_attention_blocks = global_attention_blocks
        self.use_rel_pos = bool(use_rel_pos)
        self.rel_pos_grid = rel_pos_grid
        self.pretrain_image_size = pretrain_image_size
        self.residual_blocks = residual_blocks
        self.pyramid_dim = pyramid_dim
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self._feature_tensors = features
        self._pyramid = {f"P{i}": f"p{i}" for i in range(2, 7)}

    @property
    def output_dim(self):
        return self.pyramid_dim

    def blocks(self):
        """The transformer blocks, in network order."""
        return [layer for layer in self.layers if isinstance(layer, ViTDetBlock)]

    @staticmethod
    def get_layout_map(device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"):
        """A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`
        (JAX): every block's `qkv`/`fc1` split by output columns and
        `proj`/`fc2` by input rows over the model axis (Megatron-style), the
        patch embedding and the pyramid's convolutions by output channels;
        norms, positions and relative tables replicated."""
        from keras_vit.backbones.backbone import block_layout_map

        layout_map = block_layout_map(device_mesh, model_parallel_dim_name, data_parallel_dim_name, r"(.*/)?block_\d+")
        layout_map[r"(.*/)?simfp_\d/(lateral|output_conv)/kernel"] = (None, None, None, model_parallel_dim_name)
        return layout_map

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "image_shape": self.image_shape,
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "window_size": self.window_size,
            "global_attention_blocks": self.global_attention_blocks,
            "use_rel_pos": self.use_rel_pos,
            "rel_pos_grid": self.rel_pos_grid,
            "pretrain_image_size": self.pretrain_image_size,
            "residual_blocks": self.residual_blocks,
            "pyramid_dim": self.pyramid_dim,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }

    @classmethod
    def from_config(cls, config):
        config = with_dtype_policy(config)
        for key in ("image_shape", "global_attention_blocks", "rel_pos_grid", "residual_blocks"):
            if isinstance(config.get(key), list):
                config[key] = tuple(config[key])
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """A ViTDet backbone from a preset (`"vitdet_b"`, `"vitdet_l"`,
        `"vitdet_h"`; `source="detectron2"` (default), `"mae"` for the
        ImageNet MAE initialisation with a new pyramid), a preset directory,
        a detectron2 `.pkl`, a transformers `VitDetBackbone` folder or a
        timm MAE checkpoint. `image_size=(H, W)` builds it for another input
        size with the same weights."""
        return super().from_preset(preset, load_weights=load_weights, **overrides)
