"""ResNet state dicts -> keras_vit `ResNetBackbone`, in two layouts.

- `"torchvision"`: `conv1`, `bn1`, `layer{s}.{b}.{conv1,bn1,conv2,bn2,conv3,bn3}`,
  `layer{s}.0.downsample.{0,1}` (conv, BatchNorm). Used by torchvision, timm's
  `resnet50`/`resnet101`, DETR's releases (under `backbone.0.body.`) and
  transformers' timm-backed DETR (under `model.backbone.conv_encoder.model.` in
  4.x, `model.backbone.model.` in 5.x).
- `"transformers"`: transformers' own `ResNetModel`
  (`embedder.embedder.{convolution,normalization}`,
  `encoder.stages.{s}.layers.{b}.layer.{0,1,2}.*`, `...shortcut.*`), used by
  DETR configs with `use_timm_backbone=False`.

Pass the `prefix` under which the backbone sits.
"""

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import conv2d

RESNET_LAYOUTS = ("torchvision", "transformers")


def _batch_norm(layer, state_dict, prefix):
    assign(layer.gamma, state_dict[f"{prefix}.weight"], f"{prefix}.weight")
    assign(layer.beta, state_dict[f"{prefix}.bias"], f"{prefix}.bias")
    assign(layer.moving_mean, state_dict[f"{prefix}.running_mean"], f"{prefix}.running_mean")
    assign(layer.moving_variance, state_dict[f"{prefix}.running_var"], f"{prefix}.running_var")


def _pairs(backbone, layout):
    """Yields (keras conv name, keras BatchNorm name, checkpoint conv key, checkpoint norm key)."""
    if layout == "torchvision":
        yield "conv1", "bn1", "conv1", "bn1"
    else:
        yield "conv1", "bn1", "embedder.embedder.convolution", "embedder.embedder.normalization"
    for stage, blocks in enumerate(backbone.stage_blocks, start=1):
        for index in range(blocks):
            name = f"layer{stage}_{index}"
            if layout == "torchvision":
                key = f"layer{stage}.{index}"
                convs = [(f"{key}.conv{i}", f"{key}.bn{i}") for i in (1, 2, 3)]
                shortcut = (f"{key}.downsample.0", f"{key}.downsample.1")
            else:
                key = f"encoder.stages.{stage - 1}.layers.{index}"
                convs = [(f"{key}.layer.{i}.convolution", f"{key}.layer.{i}.normalization") for i in (0, 1, 2)]
                shortcut = (f"{key}.shortcut.convolution", f"{key}.shortcut.normalization")
            for i, (conv, norm) in enumerate(convs, start=1):
                yield f"{name}_conv{i}", f"{name}_bn{i}", conv, norm
            if index == 0:
                yield f"{name}_downsample", f"{name}_downsample_bn", *shortcut


def load_torchvision_resnet(backbone, state_dict, prefix="", layout="torchvision"):
    """Copies a ResNet state dict into a `ResNetBackbone` of the same shape.

    Args:
        backbone: a `ResNetBackbone`.
        state_dict: name -> array.
        prefix: the string before the backbone's own names.
        layout: `"torchvision"` or `"transformers"` (see the module docstring).

    Returns:
        The set of checkpoint keys used (the caller may hold other modules' keys).
    """
    if layout not in RESNET_LAYOUTS:
        raise ValueError(f"layout must be one of {RESNET_LAYOUTS}. Received: layout={layout!r}")
    state_dict = TrackedDict(state_dict)
    for conv, norm, conv_key, norm_key in _pairs(backbone, layout):
        conv2d(backbone.get_layer(conv), state_dict, f"{prefix}{conv_key}")
        _batch_norm(backbone.get_layer(norm), state_dict, f"{prefix}{norm_key}")
    return state_dict.used
