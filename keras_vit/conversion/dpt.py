"""DPT's neck and heads from transformers' layout (`DPTForDepthEstimation`,
`DPTForSemanticSegmentation`): plain numpy, no framework imports.

Keys (transformers):
    neck.reassemble_stage.readout_projects.{i}.0       Linear(2D -> D)
    neck.reassemble_stage.layers.{i}.projection         Conv2d 1x1
    neck.reassemble_stage.layers.{i}.resize             ConvTranspose2d / Conv2d
    neck.convs.{i}                                      Conv2d 3x3, no bias
    neck.fusion_stage.layers.{i}.residual_layer{1,2}.convolution{1,2}, .batch_norm{1,2}
    neck.fusion_stage.layers.{i}.projection             Conv2d 1x1
    head.head.{0,2,4}                                   depth head convolutions
    head.head.{0,1,4}, auxiliary_head.head.{0,1,4}      segmentation heads
"""

from keras_vit.conversion.common import assign
from keras_vit.conversion.common import conv2d
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy


def batch_norm(layer, state_dict, prefix):
    """torch BatchNorm2d -> Keras BatchNormalization (weights and running statistics)."""
    assign(layer.gamma, state_dict[f"{prefix}.weight"], f"{prefix}.weight")
    assign(layer.beta, state_dict[f"{prefix}.bias"], f"{prefix}.bias")
    assign(layer.moving_mean, state_dict[f"{prefix}.running_mean"], f"{prefix}.running_mean")
    assign(layer.moving_variance, state_dict[f"{prefix}.running_var"], f"{prefix}.running_var")
    if f"{prefix}.num_batches_tracked" in state_dict:
        state_dict[f"{prefix}.num_batches_tracked"]  # torch's step counter: no Keras counterpart (read = placed)


def conv2d_transpose(layer, state_dict, prefix):
    """torch ConvTranspose2d `(I, O, kh, kw)` -> Keras Conv2DTranspose `(kh, kw, O, I)`."""
    kernel = to_numpy(state_dict[f"{prefix}.weight"]).transpose(2, 3, 1, 0)
    assign(layer.kernel, kernel, f"{prefix}.weight")
    assign(layer.bias, state_dict[f"{prefix}.bias"], f"{prefix}.bias")


def load_reassemble(layer, state_dict, index, prefix="neck.reassemble_stage"):
    """A `DPTReassemble` from stage `index` of transformers' reassemble stage."""
    if layer.readout == "project":
        linear(layer.readout_projection, state_dict, f"{prefix}.readout_projects.{index}.0")
    conv2d(layer.projection, state_dict, f"{prefix}.layers.{index}.projection")
    if layer.factor > 1:
        conv2d_transpose(layer.resample, state_dict, f"{prefix}.layers.{index}.resize")
    elif layer.factor == 0.5:
        conv2d(layer.resample, state_dict, f"{prefix}.layers.{index}.resize")


def load_residual_unit(layer, state_dict, prefix):
    conv2d(layer.conv1, state_dict, f"{prefix}.convolution1")
    conv2d(layer.conv2, state_dict, f"{prefix}.convolution2")
    if layer.use_batch_norm:
        batch_norm(layer.norm1, state_dict, f"{prefix}.batch_norm1")
        batch_norm(layer.norm2, state_dict, f"{prefix}.batch_norm2")


def load_fusion(layer, state_dict, prefix):
    """A `DPTFusionBlock` from `neck.fusion_stage.layers.{i}`."""
    load_residual_unit(layer.residual1, state_dict, f"{prefix}.residual_layer1")
    load_residual_unit(layer.residual2, state_dict, f"{prefix}.residual_layer2")
    conv2d(layer.projection, state_dict, f"{prefix}.projection")


def load_depth_head(layer, state_dict, prefix="head"):
    if layer.add_projection:
        conv2d(layer.projection, state_dict, f"{prefix}.projection")
    conv2d(layer.conv1, state_dict, f"{prefix}.head.0")
    conv2d(layer.conv2, state_dict, f"{prefix}.head.2")
    conv2d(layer.conv3, state_dict, f"{prefix}.head.4")


def load_segmentation_head(layer, state_dict, prefix="head"):
    """The main (`head`) or auxiliary (`auxiliary_head`) segmentation head."""
    conv2d(layer.conv, state_dict, f"{prefix}.head.0")
    batch_norm(layer.norm, state_dict, f"{prefix}.head.1")
    conv2d(layer.classifier, state_dict, f"{prefix}.head.4")


_BIT = "dpt.embeddings.backbone.bit."


def _bit_to_timm(key):
    """transformers' BiT names (DPT-Hybrid) -> timm's ResNetV2 names, which
    keras_vit's hybrid loader reads: `embedder.convolution` -> `stem.conv`,
    `embedder.norm` -> `stem.norm`, `encoder.stages.S.layers.I.*` ->
    `stages.S.blocks.I.*` (block tensors keep their names)."""
    rest = key[len(_BIT):]
    rest = rest.replace("embedder.convolution.", "stem.conv.").replace("embedder.norm.", "stem.norm.")
    if rest.startswith("encoder.stages."):
        parts = rest.split(".")  # encoder stages S layers I ...
        rest = ".".join(["stages", parts[2], "blocks", parts[4], *parts[5:]])
    return "patch_embed.backbone." + rest


def _load_bit_hybrid(backbone, state_dict):
    """The ResNet of a transformers DPT-Hybrid and its 1x1 projection."""
    from keras_vit.conversion.common import TrackedDict
    from keras_vit.conversion.timm import _load_hybrid

    names = {_bit_to_timm(k): k for k in state_dict if k.startswith(_BIT)}
    renamed = TrackedDict({timm: state_dict[k] for timm, k in names.items()})
    _load_hybrid(backbone, renamed)
    for timm in renamed.used:
        state_dict[names[timm]]  # read = placed
    conv2d(backbone.get_layer("patch_embedding").projection, state_dict, "dpt.embeddings.projection")


def load_transformers_dpt(model, state_dict):
    """A transformers `DPTForDepthEstimation` / `DPTForSemanticSegmentation`
    state dict (plain ViT or DPT-Hybrid backbone) into a `DPTDepthEstimator` /
    `DPTImageSegmenter` of the same sizes. Every tensor must find its place."""
    from keras_vit.conversion.common import TrackedDict
    from keras_vit.conversion.common import check_all_used
    from keras_vit.conversion.transformers import load_transformers_backbone

    state_dict = TrackedDict(state_dict)
    if model.backbone.hybrid_layers is not None:
        _load_bit_hybrid(model.backbone, state_dict)
    load_transformers_backbone(model.backbone, state_dict, "dpt.")
    for index in range(len(model.taps)):
        try:
            layer = model.get_layer(f"reassemble_{index}")
        except ValueError:
            layer = None  # a ResNet stage of DPT-Hybrid: no reassembly
        if layer is not None:
            load_reassemble(layer, state_dict, index)
        conv2d(model.get_layer(f"neck_conv_{index}"), state_dict, f"neck.convs.{index}")
        load_fusion(model.get_layer(f"fusion_{index}"), state_dict, f"neck.fusion_stage.layers.{index}")
    if model.__class__.__name__ == "DPTDepthEstimator":
        load_depth_head(model.get_layer("depth_head"), state_dict, "head")
    else:
        load_segmentation_head(model.get_layer("head"), state_dict, "head")
        if model.auxiliary_head:
            load_segmentation_head(model.get_layer("auxiliary_head"), state_dict, "auxiliary_head")
    check_all_used(state_dict, state_dict.used, "transformers DPT", ignore=("dpt.pooler.",))
    return model
