"""The ViT family: its preset table and its registration with the shared loader.

Sizes are decoded from one variant table (as big_vision's `decode_variant`);
each preset names its variant, patch, resolution, head, preprocessing and the
public checkpoint its weights are converted from. Parameter counts are checked
against timm and transformers in `tests/presets/test_vit_presets.py`.

The family's functions (bottom of the file) tell the shared loader how a
table entry becomes a config, how weights are fetched and converted, which
`from_preset` arguments apply and how weights carry over to a new head or
resolution. Model classes are imported inside them, never at import time.
"""

import copy
import inspect
import os

import numpy as np

from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import register_family
from keras_vit.presets.registry import serialized
from keras_vit.utils.validation import check_pair

# variant: (hidden_dim, num_layers, mlp_dim, num_heads), ViT paper Table 1 and
# the DeiT/AugReg Ti and S sizes.
VARIANTS = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
}

# Preprocessing families (REFERENCE.md section 1.5): pixels in [0, 255] map to
# [-1, 1] for the original ViT / AugReg weights, ImageNet mean/std for DeiT.
PREPROCESSING = {
    "inception": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}


def _preset(
    variant, patch, image_size, source, description, preprocessing="inception",
    source_format="timm", sha256=None, **extra,
):
    hidden_dim, num_layers, mlp_dim, num_heads = VARIANTS[variant]
    backbone = {
        "image_shape": (image_size, image_size, 3),
        "patch_size": patch,
        "hidden_dim": hidden_dim,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
        # timm and transformers checkpoints: LayerNorm eps 1e-6 and exact GELU.
        "layer_norm_epsilon": 1e-6,
        "gelu_approximate": False,
    }
    backbone.update(extra.pop("backbone", {}))
    classifier = {"num_classes": 1000, "pooling": "token", "representation_size": None}
    classifier.update(extra.pop("classifier", {}))
    if extra:
        raise ValueError(f"Unknown preset fields: {sorted(extra)}")
    return {
        "description": description,
        "variant": f"{variant}/{patch}",
        "backbone": backbone,
        "classifier": classifier,
        "preprocessing": {"image_size": image_size, **PREPROCESSING[preprocessing]},
        # A Hugging Face hub repo holding model.safetensors in `source_format`.
        "source": source,
        "format": source_format,
        "sha256": sha256,
    }


VIT_PRESETS = {
    "vit_ti16": _preset(
        "Ti", 16, 224,
        "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        "ViT-Ti/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_s16": _preset(
        "S", 16, 224,
        "timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
        "ViT-S/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_s32": _preset(
        "S", 32, 224,
        "timm/vit_small_patch32_224.augreg_in21k_ft_in1k",
        "ViT-S/32, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_b8": _preset(
        "B", 8, 224,
        "timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
        "ViT-B/8, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg2).",
    ),
    "vit_b16": _preset(
        "B", 16, 224,
        "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "ViT-B/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg2).",
    ),
    "vit_b32": _preset(
        "B", 32, 224,
        "timm/vit_base_patch32_224.augreg_in21k_ft_in1k",
        "ViT-B/32, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_l16": _preset(
        "L", 16, 224,
        "timm/vit_large_patch16_224.augreg_in21k_ft_in1k",
        "ViT-L/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_l32": _preset(
        "L", 32, 384,
        "timm/vit_large_patch32_384.orig_in21k_ft_in1k",
        "ViT-L/32, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 384 "
        "(original release).",
    ),
    "vit_h14": _preset(
        "H", 14, 224,
        "timm/vit_huge_patch14_224.orig_in21k",
        "ViT-H/14, ImageNet-21k pre-trained (original release); the checkpoint has "
        "no classifier, so the 1000-class head starts untrained.",
    ),
    # Pre-training checkpoints people fine-tune from: ImageNet-21k (21,843
    # classes) with its head, the original in21k B/16 that VPT starts from
    # (released without a head), and MAE's self-supervised ViT-B/16 (no head).
    **{
        f"vit_{variant.lower()}16_in21k": _preset(
            variant, 16, 224,
            f"timm/vit_{size}_patch16_224.augreg_in21k",
            f"ViT-{variant}/16, ImageNet-21k pre-trained (AugReg), with its 21,843-class head: a starting point "
            "for fine-tuning.",
            classifier={"num_classes": 21843},
        )
        for variant, size in (("Ti", "tiny"), ("S", "small"), ("B", "base"), ("L", "large"))
    },
    "vit_b16_orig_in21k": _preset(
        "B", 16, 224,
        "timm/vit_base_patch16_224.orig_in21k",
        "ViT-B/16, ImageNet-21k pre-trained (original release; the backbone of the VPT paper); released "
        "without a classifier, so the model returns the class token's features (num_classes=0).",
        classifier={"num_classes": 0},
    ),
    "vit_b16_mae": _preset(
        "B", 16, 224,
        "timm/vit_base_patch16_224.mae",
        "ViT-B/16 pre-trained with MAE (masked autoencoding, ImageNet-1k, no labels); no classifier "
        "(num_classes=0): fine-tune it, e.g. with layer decay 0.65 as the MAE paper.",
        preprocessing="imagenet",
        classifier={"num_classes": 0},
    ),
    # DeiT (Touvron et al., 2021): ViT architecture trained on ImageNet-1k only,
    # with ImageNet mean/std preprocessing.
    "deit_ti16": _preset(
        "Ti", 16, 224,
        "timm/deit_tiny_patch16_224.fb_in1k",
        "DeiT-Ti/16, ImageNet-1k from scratch at 224 (72.2% top-1).",
        preprocessing="imagenet",
    ),
    "deit_s16": _preset(
        "S", 16, 224,
        "timm/deit_small_patch16_224.fb_in1k",
        "DeiT-S/16, ImageNet-1k from scratch at 224 (79.9% top-1).",
        preprocessing="imagenet",
    ),
    "deit_b16": _preset(
        "B", 16, 224,
        "timm/deit_base_patch16_224.fb_in1k",
        "DeiT-B/16, ImageNet-1k from scratch at 224 (81.8% top-1).",
        preprocessing="imagenet",
    ),
    # Hybrids (ViT paper section 3.1): patches cut from a BiT ResNet feature map.
    "r50_vit_b16": _preset(
        "B", 1, 384,
        "timm/vit_base_r50_s16_384.orig_in21k_ft_in1k",
        "R50+ViT-B/16 hybrid: ResNet-50 stages (3, 4, 9) to stride 16, then ViT-B; "
        "ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 384 (original release).",
        backbone={"hybrid_layers": (3, 4, 9)},
    ),
    "r26_vit_s32": _preset(
        "S", 1, 224,
        "timm/vit_small_r26_s32_224.augreg_in21k_ft_in1k",
        "R26+ViT-S/32 hybrid: ResNet-26 stages (2, 2, 2, 2) to stride 32, then ViT-S (AugReg).",
        backbone={"hybrid_layers": (2, 2, 2, 2)},
    ),
    "r_vit_ti16": _preset(
        "Ti", 8, 224,
        "timm/vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k",
        "R+ViT-Ti/16 hybrid: the ResNet stem alone (stride 4) and 8x8 patches, a 7x7 "
        "grid at 224 (AugReg).",
        backbone={"hybrid_layers": ()},
    ),
}


# ---------------------------------------------------------------- the family


def table_config(name):
    """The `ViT` config of a table preset (no weights)."""
    entry = VIT_PRESETS[name]
    return {
        "backbone": serialized("keras_vit>ViTBackbone", entry["backbone"]),
        **entry["classifier"],
        "preprocessor": serialized("keras_vit>ViTImagePreprocessor", entry["preprocessing"]),
    }


def build_from_config(config):
    """A `ViT` from a preset config (see `keras_vit.presets.preset_directory`)."""
    from keras_vit.models.vit import ViT

    return ViT.from_config(copy.deepcopy(config))


def _fetch(name, source):
    from keras_vit.conversion.checkpoint import load_checkpoint_weights
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.presets.download import download
    from keras_vit.presets.download import hf_file_url

    entry = VIT_PRESETS[name]
    url = hf_file_url(entry["source"], "model.safetensors")
    path = download(url, filename=entry["source"].replace("/", "--") + ".safetensors", sha256=entry.get("sha256"))
    model = build_from_config(table_config(name))
    load_checkpoint_weights(model, read_checkpoint(path), entry["format"])
    return model, {"source": url}


def _argument_names(cls, exclude):
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs", *exclude)]


def override(config, kwargs):
    """`num_classes`, `image_size`, `dtype` and any backbone or classifier argument.

    `num_heads` (which timm files do not store) changes the native config too;
    the rest is carried over to a second model after the weights load.
    """
    from keras_vit.backbones.vit_backbone import ViTBackbone
    from keras_vit.models.vit import ViT

    backbone_args = _argument_names(ViTBackbone, ("dtype",))
    classifier_args = _argument_names(ViT, ("backbone", "preprocessor", "dtype"))
    kwargs = dict(kwargs)
    unknown = sorted(set(kwargs) - set(backbone_args) - set(classifier_args) - {"image_size", "dtype"})
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for from_preset. Backbone arguments: "
            f"{backbone_args}; classifier arguments: {classifier_args}; and image_size, dtype."
        )
    native = copy.deepcopy(config)
    dtype = kwargs.pop("dtype", None)
    if dtype is not None:
        native["dtype"] = dtype
        native["backbone"]["config"]["dtype"] = dtype
    if "num_heads" in kwargs:
        native["backbone"]["config"]["num_heads"] = kwargs.pop("num_heads")
    target = copy.deepcopy(native)
    image_size = kwargs.pop("image_size", None)
    for key, value in kwargs.items():
        if key in backbone_args:
            target["backbone"]["config"][key] = value
        else:
            target[key] = value
    if image_size is not None:
        size = check_pair("image_size", image_size)
        channels = target["backbone"]["config"]["image_shape"][-1]
        target["backbone"]["config"]["image_shape"] = (size[0], size[1], channels)
        if target.get("preprocessor"):
            target["preprocessor"]["config"]["image_size"] = size
    return native, target


def transfer_weights(source, target, method="bicubic", align_corners=False, antialias=True):
    """Copies weights between two ViTs that differ in resolution or head.

    Layers are matched by name. The position embedding is resized to the
    target's grid; the defaults (bicubic, antialiased) are timm's
    `resample_abs_pos_embed`, `antialias=False` gives transformers'
    `interpolate_pos_encoding`, and `method="bilinear", align_corners=True,
    antialias=False` the original ViT code. The head is copied only when its
    shape matches; a head for a new class count starts at zero, as the ViT
    paper fine-tunes (`keras_vit.tuning.prepare(..., head_initializer=...)`
    re-initialises it otherwise).
    """
    for layer in source.backbone.layers:
        if not layer.weights:
            continue
        target_layer = target.backbone.get_layer(layer.name)
        if layer.name == "position_embedding" and layer.grid_size != target_layer.grid_size:
            resized = layer.resized_embedding(target_layer.grid_size, method, align_corners, antialias)
            target_layer.set_weights([resized])
            continue
        _set_weights(layer, target_layer)
    for name in ("pre_logits", "head"):
        try:
            layer, target_layer = source.get_layer(name), target.get_layer(name)
        except ValueError:
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes == [tuple(w.shape) for w in target_layer.weights]:
            target_layer.set_weights(layer.get_weights())
        elif name == "head":
            target_layer.set_weights([np.zeros(tuple(w.shape), w.dtype) for w in target_layer.weights])


def _set_weights(layer, target_layer):
    values = layer.get_weights()
    shapes = [tuple(w.shape) for w in target_layer.weights]
    if [v.shape for v in values] != shapes:
        raise ValueError(
            f"Cannot carry the weights of layer {layer.name!r} over: shapes "
            f"{[v.shape for v in values]} vs {shapes}. Overrides may change the "
            "resolution, the head and regularisation, not the architecture's sizes."
        )
    target_layer.set_weights(values)


def _release_of_file(path):
    """The preset whose release a checkpoint file is, told by its file or folder
    name, for the normalisation a bare file does not state (a DeiT file
    downloaded by hand, as the offline instructions say, must keep DeiT's
    ImageNet mean/std). Names as the releases ship them are recognised: the
    hub repo (`deit_small_patch16_224.fb_in1k/model.safetensors`, the cache's
    `timm--deit_small_patch16_224.fb_in1k--model.safetensors`) or the
    architecture (`deit_small_patch16_224-cd65a155.pth`). None when no name,
    or names of releases that normalise differently, match."""
    if not path:
        return None
    names = [os.path.basename(path), os.path.basename(os.path.dirname(os.path.abspath(path)))]
    matches = {}
    for preset, entry in VIT_PRESETS.items():
        repo = entry["source"].split("/")[-1]  # deit_small_patch16_224.fb_in1k
        architecture = repo.split(".")[0]
        for name in names:
            if repo in name:
                matches.setdefault(2, set()).add(preset)
            elif name.startswith(architecture + "-") or name.startswith(architecture + "."):
                matches.setdefault(1, set()).add(preset)
    for rank in (2, 1):
        found = matches.get(rank, set())
        normalisations = {tuple(map(tuple, (VIT_PRESETS[p]["preprocessing"]["mean"], VIT_PRESETS[p]["preprocessing"]["std"]))) for p in found}
        if len(normalisations) == 1:
            return sorted(found)[0]
        if found:
            return None  # names of releases that normalise differently: nothing guessed
    return None


def _read_checkpoint(arrays, path, hf_config, kwargs):
    """The `ViT` config of an original `.npz`, timm or transformers checkpoint, or None."""
    from keras_vit.conversion.checkpoint import config_from_checkpoint
    from keras_vit.conversion.checkpoint import detect_format

    try:
        source_format = detect_format(arrays)
    except ValueError:
        return None
    if hf_config is not None and "architecture" in hf_config and source_format != "timm":
        hf_config = None  # a timm config.json beside another format's file
    config = config_from_checkpoint(arrays, source_format, hf_config=hf_config, num_heads=kwargs.get("num_heads"))
    size = config["backbone"]["image_shape"][:2]
    preprocessing = {"image_size": size}
    timm_cfg = (hf_config or {}).get("pretrained_cfg") or {}
    if "mean" in timm_cfg and "std" in timm_cfg:  # timm's config.json states its normalisation
        preprocessing.update(mean=tuple(timm_cfg["mean"]), std=tuple(timm_cfg["std"]))
    else:
        release = _release_of_file(path)
        if release is not None:
            preprocessing.update({k: VIT_PRESETS[release]["preprocessing"][k] for k in ("mean", "std")})
    return {
        "backbone": serialized("keras_vit>ViTBackbone", config["backbone"]),
        **config["classifier"],
        "preprocessor": serialized("keras_vit>ViTImagePreprocessor", preprocessing),
    }


def _load_checkpoint(model, arrays):
    from keras_vit.conversion.checkpoint import load_checkpoint_weights

    load_checkpoint_weights(model, arrays)


VIT_FAMILY = register_family(
    PresetFamily(
        name="vit",
        task="keras_vit>ViT",
        backbone="keras_vit>ViTBackbone",
        presets=VIT_PRESETS,
        table_config=table_config,
        fetch=_fetch,
        build=build_from_config,
        override=override,
        transfer=transfer_weights,
        read_checkpoint=_read_checkpoint,
        load_checkpoint=_load_checkpoint,
    )
)
