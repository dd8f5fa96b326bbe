import keras

from keras_vit.backbones.backbone import Backbone
from keras_vit.backbones.backbone import FeaturePyramid
from keras_vit.layers.conv2d import Conv2D
from keras_vit.utils.serialization import with_dtype_policy
from keras_vit.utils.validation import check_mesh_axes
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_positive_int

# Blocks per stage (torchvision / DETR).
RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _stage_blocks(depth):
    if isinstance(depth, int) and depth in RESNET_DEPTHS:
        return RESNET_DEPTHS[depth]
    if (
        isinstance(depth, (tuple, list))
        and len(depth) == 4
        and all(isinstance(b, int) and b > 0 for b in depth)
    ):
        return tuple(depth)
    raise ValueError(
        f"depth must be one of {sorted(RESNET_DEPTHS)} or four positive per-stage block counts. "
        f"Received: depth={depth!r}"
    )


def _batch_norm(name, dtype):
    # DETR freezes every BatchNorm (torchvision's FrozenBatchNorm2d, eps 1e-5):
    # a non-trainable Keras BatchNormalization always runs in inference mode,
    # y = (x - moving_mean) / sqrt(moving_var + 1e-5) * gamma + beta.
    layer = keras.layers.BatchNormalization(epsilon=1e-5, dtype=dtype, name=name)
    layer.trainable = False
    return layer


def _conv(filters, kernel, strides, dilation, name, dtype):
    """A bias-free conv with torch's symmetric padding made explicit."""
    pad = dilation * (kernel - 1) // 2
    layers = []
    if pad:
        layers.append(keras.layers.ZeroPadding2D(pad, dtype=dtype, name=f"{name}_pad"))
    layers.append(
        Conv2D(
            filters, kernel, strides=strides, dilation_rate=dilation, padding="valid",
            use_bias=False, dtype=dtype, name=name,
        )
    )
    return layers


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetBackbone(FeaturePyramid, Backbone, keras.Model):
    """ResNet-50/101 in torchvision's layout, as DETR uses it.

    ResNet v1.5 (the stride sits on each bottleneck's 3x3 conv), BatchNorm
    frozen with epsilon 1e-5, and torch's symmetric padding written out with
    `ZeroPadding2D` + "valid" convolutions (Keras's "same" would put the extra
    pixel on the bottom/right only). With `dilate_last_stage=True` (DETR's
    DC5 variants) the last stage keeps stride 16 and dilates its 3x3 convs by
    2 (its first block keeps dilation 1, as torchvision does).

    Features are published by name: `"stem"` (stride 4), `"stage_1"` ..
    `"stage_4"` (C2..C5: 256, 512, 1024, 2048 channels at strides 4, 8, 16,
    32, or 16 for the last with dilation). The model's output is `"stage_4"`.
    `pyramid_outputs` (the multi-scale contract, see `keras_vit.SwinBackbone`)
    gives the stages as levels `"P2"`...`"P5"`.

    Args:
        depth: 50 or 101, or four per-stage block counts (e.g. `(1, 1, 1, 1)`
            for a tiny test network).
        image_shape: `(H, W, C)`; `(None, None, 3)` accepts any size.
        dilate_last_stage: bool, the DC5 variant.
        stem_filters: int, channels of the 7x7 stem (64).
        stage_filters: four ints, each stage's output channels (256, 512,
            1024, 2048); the bottleneck width is a quarter of them.
        dtype: dtype policy.

    Call arguments:
        images: `(B, H, W, C)` normalised with the ImageNet mean/std.

    Returns:
        `(B, ceil(H/32), ceil(W/32), 2048)` (stride 16 with dilation).
    """

    def __init__(
        self,
        depth=50,
        image_shape=(None, None, 3),
        dilate_last_stage=False,
        stem_filters=64,
        stage_filters=(256, 512, 1024, 2048),
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("ResNetBackbone", kwargs)
        stage_blocks = _stage_blocks(depth)
        stem_filters = check_positive_int("stem_filters", stem_filters)
        if (
            not isinstance(stage_filters, (tuple, list))
            or len(stage_filters) != 4
            or any(not isinstance(f, int) or f < 4 or f % 4 for f in stage_filters)
        ):
            raise ValueError(
                "stage_filters must be four positive multiples of 4 (each stage's output channels). "
                f"Received: stage_filters={stage_filters!r}"
            )
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
            raise ValueError(
                f"image_shape must be (height, width, channels). Received: image_shape={image_shape!r}"
            )
        check_positive_int("image_shape[-1]", image_shape[-1])

        inputs = keras.Input(shape=tuple(image_shape), name="images")
        x = _apply(_conv(stem_filters, 7, 2, 1, "conv1", dtype), inputs)
        x = keras.activations.relu(_batch_norm("bn1", dtype)(x))
        x = keras.layers.ZeroPadding2D(1, dtype=dtype, name="pool_pad")(x)
        # Zero padding is exact for the max-pool: its inputs are >= 0 after ReLU.
        x = keras.layers.MaxPooling2D(3, strides=2, dtype=dtype, name="pool")(x)
        features = {"stem": x}
        dilation = 1
        for stage, blocks in enumerate(stage_blocks, start=1):
            width = stage_filters[stage - 1] // 4
            strides = 1 if stage == 1 else 2
            previous_dilation = dilation
            if stage == 4 and dilate_last_stage:
                dilation, strides = dilation * strides, 1
            for index in range(blocks):
                name = f"layer{stage}_{index}"
                block_strides = strides if index == 0 else 1
                block_dilation = previous_dilation if index == 0 else dilation
                shortcut = x
                if index == 0:
                    shortcut = _apply(_conv(4 * width, 1, block_strides, 1, f"{name}_downsample", dtype), x)
                    shortcut = _batch_norm(f"{name}_downsample_bn", dtype)(shortcut)
                y = _apply(_conv(width, 1, 1, 1, f"{name}_conv1", dtype), x)
                y = keras.activations.relu(_batch_norm(f"{name}_bn1", dtype)(y))
                y = _apply(_conv(width, 3, block_strides, block_dilation, f"{name}_conv2", dtype), y)
                y = keras.activations.relu(_batch_norm(f"{name}_bn2", dtype)(y))
                y = _apply(_conv(4 * width, 1, 1, 1, f"{name}_conv3", dtype), y)
                y = _batch_norm(f"{name}_bn3", dtype)(y)
                x = keras.activations.relu(y + shortcut)
            features[f"stage_{stage}"] = x
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)
        self.depth = depth if isinstance(depth, int) else tuple(depth)
        self.stage_blocks = stage_blocks
        self.stem_filters = stem_filters
        self.stage_filters = tuple(stage_filters)
        self.image_shape = tuple(image_shape)
        self.dilate_last_stage = bool(dilate_last_stage)
        self._feature_tensors = features
        self._pyramid = {f"P{stage + 1}": f"stage_{stage}" for stage in range(1, 5)}

    @staticmethod
    def get_layout_map(device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"):
        """A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`
        (JAX): every convolution kernel of the stem and the bottlenecks split
        by output channels over the `model_parallel_dim_name` axis of
        `device_mesh` (each device computes its share of the channels; XLA
        gathers them for the next layer), the frozen batch-norm statistics
        replicated. Data goes over `data_parallel_dim_name`. The patterns
        find the backbone wherever it sits (DETR included). Every stage's and
        the stem's channel counts, and each bottleneck's width (a quarter of
        its stage's), must be divisible by the model axis (true of ResNet-50
        and -101 up to 16).

            mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), keras.distribution.list_devices())
            layout_map = keras_vit.ResNetBackbone.get_layout_map(mesh)
        """
        check_mesh_axes(device_mesh, model_parallel_dim_name, data_parallel_dim_name)
        layout_map = keras.distribution.LayoutMap(device_mesh)
        layout_map[r"(.*/)?(conv1|layer\d+_\d+_(conv\d|downsample))/kernel"] = (None, None, None, model_parallel_dim_name)
        return layout_map

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "depth": self.depth,
            "image_shape": self.image_shape,
            "dilate_last_stage": self.dilate_last_stage,
            "stem_filters": self.stem_filters,
            "stage_filters": self.stage_filters,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))
