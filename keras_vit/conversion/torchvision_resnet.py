"""torchvision-layout ResNet state dicts -> keras_vit `ResNetBackbone`.

Names: `conv1`, `bn1`, `layer{s}.{b}.{conv1,bn1,conv2,bn2,conv3,bn3}`,
`layer{s}.0.downsample.{0,1}` (conv, BatchNorm). The same layout is used by
torchvision, timm's `resnet50`/`resnet101`, DETR's releases (under
`backbone.0.body.`) and transformers' timm-backed DETR (under
`model.backbone.conv_encoder.model.`); pass that `prefix`.
"""

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import conv2d


def _batch_norm(layer, state_dict, prefix):
    assign(layer.gamma, state_dict[f"{prefix}.weight"], f"{prefix}.weight")
    assign(layer.beta, state_dict[f"{prefix}.bias"], f"{prefix}.bias")
    assign(layer.moving_mean, state_dict[f"{prefix}.running_mean"], f"{prefix}.running_mean")
    assign(layer.moving_variance, state_dict[f"{prefix}.running_var"], f"{prefix}.running_var")


def load_torchvision_resnet(backbone, state_dict, prefix=""):
    """Copies a torchvision-layout ResNet into a `ResNetBackbone` of the same depth.

    Returns:
        The set of checkpoint keys used (the caller may hold other modules' keys).
    """
    from keras_vit.backbones.resnet_backbone import RESNET_DEPTHS

    state_dict = TrackedDict(state_dict)
    conv2d(backbone.get_layer("conv1"), state_dict, f"{prefix}conv1")
    _batch_norm(backbone.get_layer("bn1"), state_dict, f"{prefix}bn1")
    for stage, blocks in enumerate(RESNET_DEPTHS[backbone.depth], start=1):
        for index in range(blocks):
            name, key = f"layer{stage}_{index}", f"{prefix}layer{stage}.{index}"
            for i in (1, 2, 3):
                conv2d(backbone.get_layer(f"{name}_conv{i}"), state_dict, f"{key}.conv{i}")
                _batch_norm(backbone.get_layer(f"{name}_bn{i}"), state_dict, f"{key}.bn{i}")
            if index == 0:
                conv2d(backbone.get_layer(f"{name}_downsample"), state_dict, f"{key}.downsample.0")
                _batch_norm(backbone.get_layer(f"{name}_downsample_bn"), state_dict, f"{key}.downsample.1")
    return state_dict.used
