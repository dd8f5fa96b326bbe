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


def _load_neck_and_heads(model, state_dict):
    """Reassemble, neck convolutions, fusion blocks and heads, in transformers' names."""
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
    _load_neck_and_heads(model, state_dict)
    check_all_used(state_dict, state_dict.used, "transformers DPT", ignore=("dpt.pooler.",))
    return model


# ----------------------------------------------------------- the original layout
#
# isl-org/DPT's releases (`dpt_large-midas-2f21e586.pt`, ...) are the state
# dict of `DPTDepthModel` / `DPTSegmentationModel`:
#
#   pretrained.model.*                       the timm ViT (hybrid: its ResNetV2
#                                            under patch_embed.backbone), timm names
#   pretrained.act_postprocess{k}.0.project.0   readout Linear(2D -> D) of tap k
#   pretrained.act_postprocess{k}.3          1x1 conv of tap k
#   pretrained.act_postprocess{k}.4          resample of tap k (ConvTranspose2d for
#                                            k = 1, 2; 3x3 stride-2 Conv2d for k = 4)
#   scratch.layer{k}_rn                      3x3 conv to the fusion width, no bias
#   scratch.refinenet{k}.resConfUnit{u}.conv{c} / .bn{c}, .out_conv
#                                            fusion block; refinenet4 is the
#                                            deepest (fusion_0), refinenet1 the last
#   scratch.output_conv.{i}                  the head (depth: 0, 2, 4; segmentation:
#                                            0, 1 (BatchNorm), 4)
#   auxlayer.{i}                             the auxiliary head (0, 1, 4)
#
# The DPT-Hybrid releases have no act_postprocess1/2 tensors (ResNet stages go
# in as they are). `pretrained.model.head` (timm's ImageNet classifier) is unused.

_ORIGINAL_NECK = (
    (r"pretrained\.act_postprocess([1-4])\.0\.project\.0\.", "neck.reassemble_stage.readout_projects.{k}.0."),
    (r"pretrained\.act_postprocess([1-4])\.3\.", "neck.reassemble_stage.layers.{k}.projection."),
    (r"pretrained\.act_postprocess([1-4])\.4\.", "neck.reassemble_stage.layers.{k}.resize."),
    (r"scratch\.layer([1-4])_rn\.", "neck.convs.{k}."),
    (r"scratch\.refinenet([1-4])\.resConfUnit([12])\.conv([12])\.",
     "neck.fusion_stage.layers.{fusion}.residual_layer{u}.convolution{c}."),
    (r"scratch\.refinenet([1-4])\.resConfUnit([12])\.bn([12])\.",
     "neck.fusion_stage.layers.{fusion}.residual_layer{u}.batch_norm{c}."),
    (r"scratch\.refinenet([1-4])\.out_conv\.", "neck.fusion_stage.layers.{fusion}.projection."),
    (r"scratch\.output_conv\.", "head.head."),
    (r"auxlayer\.", "auxiliary_head.head."),
)


def original_neck_name(key):
    """transformers' name of an original neck/head tensor, or None."""
    import re

    for pattern, template in _ORIGINAL_NECK:
        match = re.match(pattern, key)
        if match:
            groups = match.groups()
            fields = {}
            if groups:
                k = int(groups[0])
                fields = {"k": k - 1, "fusion": 4 - k}
                if len(groups) == 3:
                    fields.update(u=groups[1], c=groups[2])
            return template.format(**fields) + key[match.end():]
    return None


def load_original_dpt(model, state_dict):
    """An original isl-org/DPT release (`DPTDepthModel` or
    `DPTSegmentationModel` state dict, plain ViT or hybrid) into a
    `DPTDepthEstimator` / `DPTImageSegmenter` of the same sizes. Every tensor
    but timm's unused ImageNet classifier must find its place."""
    from keras_vit.conversion.common import TrackedDict
    from keras_vit.conversion.common import check_all_used
    from keras_vit.conversion.timm import load_timm_backbone

    prefix = "pretrained.model."
    timm, neck, renamed = TrackedDict(), TrackedDict(), {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            timm[key[len(prefix):]] = value
        elif (name := original_neck_name(key)) is not None:
            neck[name], renamed[name] = value, key
    load_timm_backbone(model.backbone, timm)
    try:
        _load_neck_and_heads(model, neck)
    except KeyError as error:
        missing = str(error)
        raise KeyError(
            f"The original DPT checkpoint lacks a tensor this model needs ({missing}, in transformers' "
            "names); it does not match this architecture (taps, readout, heads)."
        ) from None
    used = {prefix + k for k in timm.used} | {renamed[k] for k in neck.used}
    check_all_used(state_dict, used, "original DPT", ignore=(prefix + "head.", prefix + "pre_logits."))
    return model


# ----------------------------------------------------------- configs of checkpoints

# The original code's hooks per backbone (dpt/models.py) and its metric-depth
# releases' scale and shift (hubconf / run_monodepth.py: depth = 1 / (s x + t)).
ORIGINAL_METRIC_DEPTH = {"kitti": (6.016e-5, 0.00579), "nyu": (3.05e-4, 0.1378)}


def dpt_format(state_dict):
    """"original", "transformers" or None."""
    if "pretrained.model.pos_embed" in state_dict and any(k.startswith("scratch.") for k in state_dict):
        return "original"
    if "dpt.embeddings.position_embeddings" in state_dict and any(k.startswith("neck.") for k in state_dict):
        return "transformers"
    return None


def _hybrid_depths(state_dict, prefix):
    counts = {}
    for key in state_dict:
        if key.startswith(prefix):
            parts = key[len(prefix):].split(".")
            counts[int(parts[0])] = max(counts.get(int(parts[0]), 0), int(parts[2]) + 1)
    return tuple(counts[s] for s in sorted(counts))


def original_dpt_config(state_dict, metric_depth=None, num_heads=None):
    """`(task registered name, task config)` of an original DPT release, read
    off its tensors: sizes, taps (the code's hooks for ViT-B, ViT-L and the
    hybrid), neck widths, batch norm, heads. The attention head count is not
    in the tensors: `num_heads`, by default the releases' 64 channels per
    head. `metric_depth`: None or `(scale, shift)`."""
    from keras_vit.conversion.common import to_numpy
    from keras_vit.presets.dpt_presets import DPT_TAPS
    from keras_vit.presets.registry import serialized

    proj = to_numpy(state_dict["pretrained.model.patch_embed.proj.weight"])
    hidden, channels, patch_h, patch_w = proj.shape
    num_layers = 1 + max(int(k.split(".")[3]) for k in state_dict if k.startswith("pretrained.model.blocks."))
    mlp_dim = to_numpy(state_dict["pretrained.model.blocks.0.mlp.fc1.weight"]).shape[0]
    tokens = to_numpy(state_dict["pretrained.model.pos_embed"]).shape[1] - 1
    side = int(round(tokens**0.5))
    hybrid = "pretrained.model.patch_embed.backbone.stem.conv.weight" in state_dict
    backbone = {
        "patch_size": (int(patch_h), int(patch_w)), "hidden_dim": int(hidden), "num_layers": num_layers,
        "num_heads": int(num_heads) if num_heads else max(1, int(hidden) // 64), "mlp_dim": int(mlp_dim), "layer_norm_epsilon": 1e-6,
        "gelu_approximate": False,
    }
    if hybrid:
        depths = _hybrid_depths(state_dict, "pretrained.model.patch_embed.backbone.stages.")
        channels = to_numpy(state_dict["pretrained.model.patch_embed.backbone.stem.conv.weight"]).shape[1]
        backbone["hybrid_layers"] = depths
        stride = 4 * 2 ** (len(depths) - 1)
        taps = DPT_TAPS["hybrid"]
        widths = [256 * 2 ** i for i in range(2)]
        factors = [1, 1, 1, 0.5]
    else:
        stride = 1
        taps = DPT_TAPS["large"] if num_layers == 24 else DPT_TAPS["base"]
        widths = [to_numpy(state_dict[f"pretrained.act_postprocess{k}.3.weight"]).shape[0] for k in (1, 2)]
        factors = [4, 2, 1, 0.5]
    widths += [to_numpy(state_dict[f"pretrained.act_postprocess{k}.3.weight"]).shape[0] for k in (3, 4)]
    size = side * patch_h * stride
    backbone["image_shape"] = (size, size, int(channels))
    readout = "project" if "pretrained.act_postprocess4.0.project.0.weight" in state_dict else "ignore"
    fusion = to_numpy(state_dict["scratch.layer1_rn.weight"]).shape[0]
    config = {
        "backbone": serialized("keras_vit>ViTBackbone", backbone),
        "taps": list(taps), "neck_widths": [int(w) for w in widths], "reassemble_factors": factors,
        "readout": readout, "fusion_width": int(fusion),
        "use_batch_norm": "scratch.refinenet1.resConfUnit1.bn1.weight" in state_dict,
    }
    if "scratch.output_conv.1.running_mean" in state_dict:  # segmentation
        config["num_classes"] = int(to_numpy(state_dict["scratch.output_conv.4.weight"]).shape[0])
        config["auxiliary_head"] = "auxlayer.0.weight" in state_dict
        return "keras_vit>DPTImageSegmenter", config
    if metric_depth is not None:
        config["depth_scale"], config["depth_shift"] = (float(v) for v in metric_depth)
    return "keras_vit>DPTDepthEstimator", config


def transformers_dpt_config(hf_config):
    """`(task registered name, task config)` of a transformers DPT
    `config.json` (plain ViT or hybrid)."""
    from keras_vit.presets.dpt_presets import DPT_TAPS
    from keras_vit.presets.registry import serialized

    get = hf_config.get
    size, patch = get("image_size", 384), get("patch_size", 16)
    backbone = {
        "image_shape": (size, size, get("num_channels", 3)), "hidden_dim": get("hidden_size", 768),
        "num_layers": get("num_hidden_layers", 12), "num_heads": get("num_attention_heads", 12),
        "mlp_dim": get("intermediate_size", 3072), "layer_norm_epsilon": get("layer_norm_eps", 1e-12),
        "gelu_approximate": get("hidden_act", "gelu") != "gelu", "qkv_bias": get("qkv_bias", True),
        "patch_size": patch,
    }
    if get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"This DPT config uses hidden_act={get('hidden_act')!r}; keras_vit's ViT uses GELU.")
    indices = list(get("backbone_out_indices", [2, 5, 8, 11]))
    taps = [f"block_{i}" for i in indices]
    if get("is_hybrid", False):
        depths = tuple((get("backbone_config") or {}).get("depths", [3, 4, 9]))
        backbone["hybrid_layers"] = depths
        backbone["patch_size"] = 1
        taps = list(DPT_TAPS["hybrid"][:2]) + taps[2:]
    config = {
        "backbone": serialized("keras_vit>ViTBackbone", backbone),
        "taps": taps, "neck_widths": list(get("neck_hidden_sizes", [96, 192, 384, 768])),
        "reassemble_factors": list(get("reassemble_factors", [4, 2, 1, 0.5])),
        "readout": get("readout_type", "project"), "fusion_width": get("fusion_hidden_size", 256),
        "use_batch_norm": bool(get("use_batch_norm_in_fusion_residual", False)),
    }
    architectures = get("architectures") or []
    if "DPTForSemanticSegmentation" in architectures:
        labels = get("id2label") or {}
        config["num_classes"] = int(get("num_labels", len(labels) or 150)) if not labels else len(labels)
        config["auxiliary_head"] = bool(get("use_auxiliary_head", True))
        config["dropout_rate"] = float(get("semantic_classifier_dropout", 0.1))
        return "keras_vit>DPTImageSegmenter", config
    config["add_projection"] = bool(get("add_projection", False))
    return "keras_vit>DPTDepthEstimator", config
