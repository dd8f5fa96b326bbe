"""The MViTv2 family: its preset table and its registration with the shared loader.

Sizes are timm's `mvitv2_tiny/small/base/large` (`MultiScaleVitCfg`); the
weights are Meta's ImageNet-1k releases, as timm republishes them on the
Hugging Face hub (`source="timm"`, default) or as the official `.pyth`
files (`source="official"`, from `$KERAS_VIT_MVIT_ENDPOINT`, default
`https://dl.fbaipublicfiles.com/mvit/mvitv2_models`). Parameter counts
equal timm 1.0.31's (tests/presets/test_mvit_presets.py).
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
SOURCES = ("timm", "official")
_OFFICIAL = "https://dl.fbaipublicfiles.com/mvit/mvitv2_models"


def _preset(depths, description, timm_name, official, hidden_dim=96, num_heads=1, expand_attention=True):
    return {
        "description": description,
        "backbone": {
            "image_shape": (224, 224, 3),
            "hidden_dim": hidden_dim,
            "depths": depths,
            "num_heads": num_heads,
            "expand_attention": expand_attention,
        },
        "num_classes": 1000,
        "preprocessing": {"image_size": 224, **IMAGENET},
        "timm": timm_name,
        "official": official,
    }


MVIT_PRESETS = {
    "mvitv2_t": _preset((1, 2, 5, 2), "MViTv2-T, ImageNet-1k at 224.", "timm/mvitv2_tiny.fb_in1k", "MViTv2_T_in1k.pyth"),
    "mvitv2_s": _preset((1, 2, 11, 2), "MViTv2-S, ImageNet-1k at 224.", "timm/mvitv2_small.fb_in1k", "MViTv2_S_in1k.pyth"),
    "mvitv2_b": _preset((2, 3, 16, 3), "MViTv2-B, ImageNet-1k at 224.", "timm/mvitv2_base.fb_in1k", "MViTv2_B_in1k.pyth"),
    "mvitv2_l": _preset(
        (2, 6, 36, 4), "MViTv2-L (width 144, 2 heads; the width changes in each stage's last MLP), ImageNet-1k at 224.",
        "timm/mvitv2_large.fb_in1k", "MViTv2_L_in1k.pyth", hidden_dim=144, num_heads=2, expand_attention=False,
    ),
}


def table_config(name):
    entry = MVIT_PRESETS[name]
    return {
        "backbone": serialized("keras_vit>MViTBackbone", entry["backbone"]),
        "num_classes": entry["num_classes"],
        "preprocessor": image_preprocessor_config(224, IMAGENET["mean"], IMAGENET["std"]),
    }


def build_from_config(config):
    from keras_vit.models.mvit import MViT

    return MViT.from_config(copy.deepcopy(config))


def _fetch(name, source):
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.mvit import load_mvit_state_dict
    from keras_vit.presets.download import download
    from keras_vit.presets.download import hf_file_url

    entry = MVIT_PRESETS[name]
    if source == "official":
        url = f"{os.environ.get('KERAS_VIT_MVIT_ENDPOINT', _OFFICIAL).rstrip('/')}/{entry['official']}"
        path = download(url, filename=entry["official"])
    else:
        url = hf_file_url(entry["timm"], "model.safetensors")
        path = download(url, filename=entry["timm"].replace("/", "--") + ".safetensors")
    model = build_from_config(table_config(name))
    load_mvit_state_dict(model, read_checkpoint(path))
    return model, {"source": url}


def override(config, kwargs):
    """`num_classes` (a new head after the weights load), `dtype`, and any
    backbone or classifier argument; no other image size (the relative
    positions are tables for 224)."""
    from keras_vit.backbones.mvit_backbone import MViTBackbone
    from keras_vit.models.mvit import MViT

    kwargs = dict(kwargs)
    if kwargs.pop("image_size", None) is not None:
        raise ValueError(
            "image_size: the MViTv2 presets' relative positions are tables for 224 x 224; keras_vit does not "
            "resample them. Use the preset at 224 (its preprocessor resizes any image)."
        )
    return override_backbone_and_head(MViT, MViTBackbone, config, kwargs)


def transfer_weights(source, target):
    """By path, the head zeroed for a new class count."""
    return transfer_by_path_strict(source, target, "Overrides may change the head and regularisation, not the sizes.")


MVIT_FAMILY = register_family(
    PresetFamily(
        name="mvit",
        task="keras_vit>MViT",
        backbone="keras_vit>MViTBackbone",
        presets=MVIT_PRESETS,
        table_config=table_config,
        fetch=_fetch,
        build=build_from_config,
        override=override,
        transfer=transfer_weights,
        read_checkpoint=checkpoint_reader(
            "MViTv2", "keras_vit>MViTBackbone",
            lazy("keras_vit.conversion.mvit", "detect_mvit_layout"),
            lazy("keras_vit.conversion.mvit", "mvit_config_from_state_dict"),
        ),
        load_checkpoint=lazy("keras_vit.conversion.mvit", "load_mvit_state_dict"),
        sources=SOURCES,
    )
)
