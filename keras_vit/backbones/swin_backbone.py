import math

import keras
from keras import ops

from keras_vit.backbones.backbone import Backbone
from keras_vit.backbones.backbone import FeaturePyramid
from keras_vit.layers.conv2d import Conv2D
from keras_vit.layers.swin_block import SwinPatchMerging
from keras_vit.layers.swin_block import SwinTransformerBlock
from keras_vit.utils.serialization import with_dtype_policy
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


def _per_stage(name, value, stages=None):
    if not isinstance(value, (tuple, list)) or not value or (stages is not None and len(value) != stages):
        count = "one positive int per stage" if stages is None else f"{stages} positive ints (one per stage)"
        raise ValueError(f"{name} must be {count}. Received: {name}={value!r}")
    return tuple(check_positive_int(name, v) for v in value)


def stage_windows(image_shape, patch_size, num_stages, window_size):
    """`[(window, shift), ...]` per stage: the reference's rule at the
    resolution `image_shape` gives (a stage no larger than the window gets
    one window of its size and no shift); with an unknown height or width,
    every stage keeps `window_size` and shifts by half of it (what Swin
    detectors do at their variable sizes)."""
    height, width = image_shape[0], image_shape[1]
    out = []
    for stage in range(num_stages):
        if height is None or width is None:
            out.append((window_size, window_size // 2))
            continue
        resolution = (math.ceil(height / patch_size), math.ceil(width / patch_size))
        for _ in range(stage):
            resolution = tuple(math.ceil(r / 2) for r in resolution)
        if min(resolution) <= window_size:
            out.append((min(resolution), 0))
        else:
            out.append((window_size, window_size // 2))
    return out


@keras.saving.register_keras_serializable(package="keras_vit")
class SwinBackbone(FeaturePyramid, Backbone, keras.Model):
    """Swin Transformer (Liu et al., ICCV 2021): a hierarchical vision
    transformer of shifted-window attention.

    A 4x4 patch embedding (convolution + LayerNorm) gives a stride-4 map of
    `hidden_dim` channels; four stages of Swin blocks follow, each after the
    first starting with a patch merging that halves the resolution and
    doubles the width. Inside a stage, blocks alternate between regular and
    shifted windows (shift `window_size // 2`); every block attends inside
    `window_size x window_size` windows with a relative position bias.

    Any input size works: the image is padded at the bottom/right to a
    multiple of the patch size, each block pads its map to a multiple of the
    window, and an odd map is padded before merging (transformers' `SwinModel`
    order: pad, then shift). The windows are fixed when the model is built:
    for a known `image_shape`, a stage whose resolution is not larger than
    the window gets a single window of its size and no shift (the
    reference's rule: Swin-T at 224 has no shift in its last stage); with an
    unknown height or width (`image_shape=(None, None, 3)`) every stage uses
    `window_size` and shifts.

    Features are published by name: `"stage_1"` ... `"stage_4"` (each stage's
    output before the next merging, strides 4 to 32, widths D, 2D, 4D, 8D)
    and `"final_norm"` (the last stage after the final LayerNorm, the model's
    output). `pyramid_outputs` gives the stages as levels `"P2"`...`"P5"`.

    Args:
        image_shape: `(H, W, C)`, or `(None, None, C)` for any size.
        patch_size: int (4).
        hidden_dim: int, D, the first stage's width (T/S 96, B 128, L 192).
        depths: blocks per stage (T `(2, 2, 6, 2)`, S/B/L `(2, 2, 18, 2)`).
        num_heads: heads per stage (T/S `(3, 6, 12, 24)`, B `(4, 8, 16, 32)`,
            L `(6, 12, 24, 48)`).
        window_size: int (7 for the 224 models, 12 for 384).
        mlp_ratio: float (4).
        qkv_bias: bool.
        dropout_rate, attention_dropout_rate: floats.
        drop_path_rate: float, stochastic depth of the last block; it grows
            linearly from 0 over all blocks (timm's schedule; Swin-T trained
            with 0.2, S 0.3, B 0.5).
        layer_norm_epsilon: float (1e-5).
        dtype: dtype policy.

    Call arguments:
        images: `(B, H, W, C)` preprocessed images.

    Returns:
        `(B, h, w, 8D)`, the normalised last stage (`h = ceil(H / 32)` for
        four stages).

    Example:
    >>> backbone = SwinBackbone(image_shape=(64, 64, 3), hidden_dim=12,
    ...     depths=(2, 2), num_heads=(3, 3), window_size=4)
    >>> tuple(backbone(keras.ops.zeros((1, 64, 64, 3))).shape)
    (1, 8, 8, 24)
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        patch_size=4,
        hidden_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("SwinBackbone", kwargs)
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
            raise ValueError(
                f"image_shape must be (height, width, channels), channels last. Received: image_shape={image_shape!r}"
            )
        image_shape = tuple(None if s is None else check_positive_int("image_shape", s) for s in image_shape)
        if image_shape[-1] is None:
            raise ValueError(f"image_shape must state its channels. Received: image_shape={image_shape!r}")
        patch_size = check_positive_int("patch_size", patch_size)
        hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        depths = _per_stage("depths", depths)
        num_heads = _per_stage("num_heads", num_heads, len(depths))
        for stage, heads in enumerate(num_heads):
            if (hidden_dim * 2**stage) % heads:
                raise ValueError(
                    f"num_heads[{stage}]={heads} must divide that stage's width hidden_dim * 2**{stage} = "
                    f"{hidden_dim * 2**stage}. Received: num_heads={num_heads}, hidden_dim={hidden_dim}."
                )
        window_size = check_positive_int("window_size", window_size)
        dropout_rate = check_rate("dropout_rate", dropout_rate)
        attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
        drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        windows = stage_windows(image_shape, patch_size, len(depths), window_size)
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]

        # === Layers and functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x = inputs
        if image_shape[0] is None or image_shape[1] is None or image_shape[0] % patch_size or image_shape[1] % patch_size:
            x = keras.layers.Lambda(
                lambda t: _pad_to_multiple(t, patch_size), output_shape=_padded_shape(image_shape, patch_size),
                name="patch_padding",
            )(x)
        x = Conv2D(hidden_dim, patch_size, strides=patch_size, dtype=dtype, name="patch_embedding")(x)
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="patch_norm")(x)
        features = {}
        index = 0
        for stage, (depth, heads, (window, shift)) in enumerate(zip(depths, num_heads, windows), start=1):
            width = hidden_dim * 2 ** (stage - 1)
            if stage > 1:
                x = SwinPatchMerging(
                    width // 2, layer_norm_epsilon=layer_norm_epsilon, dtype=dtype, name=f"stage_{stage}_merging"
                )(x)
            for block in range(depth):
                x = SwinTransformerBlock(
                    width, heads, window, shift_size=shift if block % 2 else 0, mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias, dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate,
                    drop_path_rate=rates[index], layer_norm_epsilon=layer_norm_epsilon, dtype=dtype,
                    name=f"stage_{stage}_block_{block}",
                )(x)
                index += 1
            features[f"stage_{stage}"] = x
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm")(x)
        features["final_norm"] = x
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

        # === Config ===
        self.image_shape = image_shape
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = window_size
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.stage_windows = windows
        self._feature_tensors = features
        self._pyramid = {f"P{stage + 1}": f"stage_{stage}" for stage in range(1, len(depths) + 1) if stage <= 4}

    @property
    def output_dim(self):
        """The last stage's width."""
        return self.hidden_dim * 2 ** (len(self.depths) - 1)

    def blocks(self):
        """The Swin blocks, in network order."""
        return [layer for layer in self.layers if isinstance(layer, SwinTransformerBlock)]

    def attention_maps(self, images, training=False):
        """Every block's attention probabilities, `{block name: (B, nW,
        heads, W*W, W*W)}` (windows in row-major order of the padded,
        shifted map), from a forward pass sharing this backbone's weights."""
        x = images
        scores = {}
        for layer in self.layers[1:]:
            if isinstance(layer, SwinTransformerBlock):
                x, scores[layer.name] = layer(x, training=training, return_attention_scores=True)
            elif layer.name != "final_norm":
                x = layer(x)
        return scores

    @staticmethod
    def get_layout_map(device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"):
        """A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`
        (JAX), Megatron-style as `ViTBackbone.get_layout_map`: every block's
        `qkv` and `fc1` split by output columns and `proj`/`fc2` by input
        rows over the model axis, the patch embedding by output channels; the
        bias tables, norms and merging layers replicated. Each stage's width
        and MLP width must be divisible by the model axis."""
        from keras_vit.backbones.backbone import block_layout_map

        return block_layout_map(device_mesh, model_parallel_dim_name, data_parallel_dim_name)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "image_shape": self.image_shape,
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "depths": self.depths,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    @classmethod
    def from_preset(cls, preset, image_size=None, load_weights=True, **overrides):
        """The backbone of a Swin preset (`"swin_t"`, ...), a preset
        directory or a checkpoint; `image_size` rebuilds it for another input
        size (`(None, None)` for any)."""
        if image_size is not None:
            overrides["image_size"] = image_size
        return super().from_preset(preset, load_weights=load_weights, **overrides)


def _pad_to_multiple(images, multiple):
    """Zeros at the bottom and right up to a multiple of `multiple` (transformers' `maybe_pad`)."""
    height = images.shape[1] if images.shape[1] is not None else ops.shape(images)[1]
    width = images.shape[2] if images.shape[2] is not None else ops.shape(images)[2]
    return ops.pad(images, [[0, 0], [0, (multiple - height % multiple) % multiple], [0, (multiple - width % multiple) % multiple], [0, 0]])


def _padded_shape(image_shape, multiple):
    return tuple(None if s is None else math.ceil(s / multiple) * multiple for s in image_shape[:2]) + (image_shape[2],)
