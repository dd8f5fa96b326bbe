"""The Swin family: its preset table and its registration with the shared loader.

Sizes are the official `configs/swin/*.yaml`; the weights are Microsoft's
releases, as timm republishes them on the Hugging Face hub (`source="timm"`,
the default) or as the GitHub release `.pth` files (`source="official"`).
Parameter counts equal timm 1.0.31's (tests/presets/test_swin_presets.py).
The official files are fetched from `$KERAS_VIT_SWIN_ENDPOINT` (default the
GitHub releases, `https://github.com/SwinTransformer/storage/releases/download`).
"""

import copy
import os

from keras_vit.presets.pooled_classifiers import IMAGENET
from keras_vit.presets.pooled_classifiers import checkpoint_reader
from keras_vit.presets.pooled_classifiers import lazy
from keras_vit.presets.pooled_classifiers import override_backbone_and_head
from keras_vit.presets.pooled_classifiers import transfer_weights as transfer_by_path_strict
from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import image_preprocessor_config
from keras_vit.presets.registry import register_family
from keras_vit.presets.registry import serialized
from keras_vit.utils.validation import check_pair

# variant: (hidden_dim, depths, num_heads), the official configs/swin.
VARIANTS = {
    "T": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "S": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "B": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "L": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}
SOURCES = ("timm", "official")
_RELEASES = "https://github.com/SwinTransformer/storage/releases/download"


def _preset(variant, image_size, window_size, timm_name, official, description):
    hidden_dim, depths, num_heads = VARIANTS[variant]
    return {
        "description": description,
        "variant": f"Swin-{variant}",
        "backbone": {
            "image_shape": (image_size, image_size, 3),
            "patch_size": 4,
            "hidden_dim": hidden_dim,
            "depths": depths,
            "num_heads": num_heads,
            "window_size": window_size,
        },
        "num_classes": 1000,
        "preprocessing": {"image_size": image_size, **IMAGENET},
        "timm": timm_name,
        "official": official,
    }


SWIN_PRESETS = {
    "swin_t": _preset(
        "T", 224, 7, "timm/swin_tiny_patch4_window7_224.ms_in1k", "v1.0.0/swin_tiny_patch4_window7_224.pth",
        "Swin-T (window 7), ImageNet-1k at 224.",
    ),
    "swin_s": _preset(
        "S", 224, 7, "timm/swin_small_patch4_window7_224.ms_in1k", "v1.0.0/swin_small_patch4_window7_224.pth",
        "Swin-S (window 7), ImageNet-1k at 224.",
    ),
    "swin_b": _preset(
        "B", 224, 7, "timm/swin_base_patch4_window7_224.ms_in1k", "v1.0.0/swin_base_patch4_window7_224.pth",
        "Swin-B (window 7), ImageNet-1k at 224.",
    ),
    "swin_b_384": _preset(
        "B", 384, 12, "timm/swin_base_patch4_window12_384.ms_in22k_ft_in1k",
        "v1.0.0/swin_base_patch4_window12_384_22kto1k.pth",
        "Swin-B (window 12), ImageNet-22k pre-trained, ImageNet-1k fine-tuned at 384.",
    ),
    "swin_l": _preset(
        "L", 224, 7, "timm/swin_large_patch4_window7_224.ms_in22k_ft_in1k",
        "v1.0.0/swin_large_patch4_window7_224_22kto1k.pth",
        "Swin-L (window 7), ImageNet-22k pre-trained, ImageNet-1k fine-tuned at 224.",
    ),
}


def table_config(name):
    """The `Swin` config of a table preset (no weights)."""
    entry = SWIN_PRESETS[name]
    return {
        "backbone": serialized("keras_vit>SwinBackbone", entry["backbone"]),
        "num_classes": entry["num_classes"],
        "preprocessor": image_preprocessor_config(entry["preprocessing"]["image_size"], IMAGENET["mean"], IMAGENET["std"]),
    }


def build_from_config(config):
    from keras_vit.models.swin import Swin

    return Swin.from_config(copy.deepcopy(config))


def _fetch(name, source):
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.swin import load_swin_state_dict
    from keras_vit.presets.download import download
    from keras_vit.presets.download import hf_file_url

    entry = SWIN_PRESETS[name]
    if source == "official":
        url = f"{os.environ.get('KERAS_VIT_SWIN_ENDPOINT', _RELEASES).rstrip('/')}/{entry['official']}"
        path = download(url, filename=url.rsplit("/", 1)[-1])
    else:
        url = hf_file_url(entry["timm"], "model.safetensors")
        path = download(url, filename=entry["timm"].replace("/", "--") + ".safetensors")
    model = build_from_config(table_config(name))
    load_swin_state_dict(model, read_checkpoint(path))
    return model, {"source": url}


def override(config, kwargs):
    """`num_classes` (a new head after the weights load), `image_size` (an
    int, `(H, W)`, or `(None, None)` for any size), `dtype`, and any backbone
    or classifier argument."""
    from keras_vit.backbones.swin_backbone import SwinBackbone
    from keras_vit.models.swin import Swin

    kwargs = dict(kwargs)
    size = kwargs.pop("image_size", None)
    native, target = override_backbone_and_head(Swin, SwinBackbone, config, kwargs)
    if size is not None:
        if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] is None and size[1] is None:
            size = (None, None)
        else:
            size = check_pair("image_size", size)
        backbone = target["backbone"]["config"]
        backbone["image_shape"] = (size[0], size[1], backbone["image_shape"][-1])
        if target.get("preprocessor") and size[0] is not None:
            target["preprocessor"]["config"]["image_size"] = size
    return native, target


def transfer_weights(source, target):
    """By path, the head zeroed for a new class count; a relative position
    table of another window raises (the window is clipped at small sizes)."""
    return transfer_by_path_strict(
        source, target,
        "A stage no larger than the window gets a window of its own size, and so a relative position table "
        "of another size: the preset's image size and the new one give some stage different windows. Pick an "
        "image_size at which every stage keeps the preset's windows (for four stages and window W: both at "
        "least 32 * W, or both the preset's), or build the model with that window_size and train it.",
    )


SWIN_FAMILY = register_family(
    PresetFamily(
        name="swin",
        task="keras_vit>Swin",
        backbone="keras_vit>SwinBackbone",
        presets=SWIN_PRESETS,
        table_config=table_config,
        fetch=_fetch,
        build=build_from_config,
        override=override,
        transfer=transfer_weights,
        read_checkpoint=checkpoint_reader(
            "Swin", "keras_vit>SwinBackbone",
            lazy("keras_vit.conversion.swin", "detect_swin_layout"),
            lazy("keras_vit.conversion.swin", "swin_config_from_state_dict"),
        ),
        load_checkpoint=lazy("keras_vit.conversion.swin", "load_swin_state_dict"),
        sources=SOURCES,
    )
)
