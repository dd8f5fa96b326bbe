"""The DETR family: the four COCO releases and the registration with the shared loader.

A preset is fetched once from the original `.pth` release (default) or the
transformers port (`source="transformers"`), converted in memory (every
tensor placed and shape-checked) and cached as a preset directory under
`preset_cache_dir()/<name>` (`<name>_transformers` for the port); later calls
read the cache.

Sources: the original releases at `$KERAS_VIT_DETR_ENDPOINT` (default
`https://dl.fbaipublicfiles.com/detr`, file names carry the first 8 hex digits
of their sha256, which is checked) and the transformers ports on the Hugging
Face hub.
"""

import copy
import os

import numpy as np

from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import override_by_signature
from keras_vit.presets.registry import register_family
from keras_vit.presets.registry import serialized
from keras_vit.presets.registry import transfer_by_path

DETR_PRESETS = {
    "detr_r50": {
        "description": "DETR R50, 100 queries, COCO 2017 (500 epochs): 42.0 AP.",
        "depth": 50, "dilate_last_stage": False,
        "original": "detr-r50-e632da11.pth", "transformers": "facebook/detr-resnet-50",
    },
    "detr_r50_dc5": {
        "description": "DETR-DC5 R50 (dilated last stage, stride 16), COCO 2017: 43.3 AP.",
        "depth": 50, "dilate_last_stage": True,
        "original": "detr-r50-dc5-f0fb7ef5.pth", "transformers": "facebook/detr-resnet-50-dc5",
    },
    "detr_r101": {
        "description": "DETR R101, COCO 2017: 43.5 AP.",
        "depth": 101, "dilate_last_stage": False,
        "original": "detr-r101-2c7b67e5.pth", "transformers": "facebook/detr-resnet-101",
    },
    "detr_r101_dc5": {
        "description": "DETR-DC5 R101, COCO 2017: 44.9 AP.",
        "depth": 101, "dilate_last_stage": True,
        "original": "detr-r101-dc5-a2e86def.pth", "transformers": "facebook/detr-resnet-101-dc5",
    },
}
SOURCES = ("original", "transformers")
# COCO category ids run 1..90 with gaps; the releases use 91 ids + "no object".
COCO_NUM_CLASSES = 91


def detr_endpoint():
    return os.environ.get("KERAS_VIT_DETR_ENDPOINT", "https://dl.fbaipublicfiles.com/detr").rstrip("/")


def _serialized_backbone(config):
    return serialized("keras_vit>ResNetBackbone", config)


def table_config(name):
    """The `DETR` config of a table preset (no weights)."""
    entry = DETR_PRESETS[name]
    backbone = {"depth": entry["depth"], "dilate_last_stage": entry["dilate_last_stage"]}
    return {"backbone": _serialized_backbone(backbone), "num_classes": COCO_NUM_CLASSES}


def build_detr(config, **overrides):
    """A built DETR from a preset config; `overrides` are further DETR arguments.

    `config["backbone"]` is a serialized `ResNetBackbone` or its plain
    constructor arguments.
    """
    from keras_vit.models.detr import DETR

    config = copy.deepcopy(config)
    if "registered_name" not in config["backbone"]:
        config["backbone"] = _serialized_backbone(config["backbone"])
    dtype = overrides.get("dtype", config.get("dtype"))
    if dtype is not None:
        config["backbone"]["config"]["dtype"] = dtype
    model = DETR.from_config({**config, **overrides})
    # Built on a 64 x 64 batch, or at the backbone's size when it has a fixed one (ViTDet).
    height, width = (s or 64 for s in model.backbone.input_shape[1:3])
    model({"images": np.zeros((1, height, width, 3), "float32"), "pixel_mask": np.ones((1, height, width), bool)})
    return model


def _checkpoint_config(arrays, hf_config=None, dilate_last_stage=None, path=""):
    from keras_vit.conversion.detr import detr_config_from_checkpoint

    heads = 8  # the original code's default (--nheads 8), used by every release
    if hf_config is not None:
        heads = hf_config.get("encoder_attention_heads", heads)
        if dilate_last_stage is None:
            dilate_last_stage = bool(hf_config.get("dilation", False))
    if dilate_last_stage is None:
        dilate_last_stage = "dc5" in os.path.basename(path).lower()
    config = detr_config_from_checkpoint(arrays, num_heads=heads, dilate_last_stage=dilate_last_stage)
    config["backbone"] = _serialized_backbone(config["backbone"])
    return config


def _fetch(name, source):
    """Downloads and converts a table preset; returns `(model, metadata)`."""
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.detr import load_detr_state_dict
    from keras_vit.presets.download import download
    from keras_vit.presets.download import name_hash_prefix
    from keras_vit.presets.download import hf_file_url

    entry = DETR_PRESETS[name]
    if source == "original":
        filename = entry["original"]
        url = f"{detr_endpoint()}/{filename}"
        path = download(url, filename=filename, sha256=name_hash_prefix(filename))
    else:
        url = hf_file_url(entry["transformers"], "model.safetensors")
        path = download(url, filename=entry["transformers"].replace("/", "--") + ".safetensors")
    arrays = read_checkpoint(path)
    config = _checkpoint_config(arrays, dilate_last_stage=entry["dilate_last_stage"])
    depth = config["backbone"]["config"]["depth"]
    if depth != entry["depth"] or config["num_classes"] != COCO_NUM_CLASSES:
        raise ValueError(
            f"The checkpoint at {url} does not hold {name} (found depth {depth}, "
            f"{config['num_classes']} classes)."
        )
    model = build_detr(config)
    load_detr_state_dict(model, arrays)
    return model, {"source": url}


def override(config, kwargs):
    """`num_classes` re-heads after the weights load; every other DETR argument
    (and `dtype`) applies to the model the weights load into."""
    from keras_vit.models.detr import DETR

    return override_by_signature(DETR, config, kwargs, retargets=("num_classes",))


transfer_weights = transfer_by_path


def _read_checkpoint(arrays, path, hf_config, kwargs):
    from keras_vit.conversion.detr import detect_detr_format

    try:
        detect_detr_format(arrays)
    except ValueError:
        return None
    return _checkpoint_config(arrays, hf_config, kwargs.pop("dilate_last_stage", None), path)


def _load_checkpoint(model, arrays):
    from keras_vit.conversion.detr import load_detr_state_dict

    load_detr_state_dict(model, arrays)


DETR_FAMILY = register_family(
    PresetFamily(
        name="detr",
        task="keras_vit>DETR",
        backbone="keras_vit>ResNetBackbone",
        presets=DETR_PRESETS,
        table_config=table_config,
        fetch=_fetch,
        build=build_detr,
        override=override,
        transfer=transfer_weights,
        read_checkpoint=_read_checkpoint,
        load_checkpoint=_load_checkpoint,
        sources=SOURCES,
        checkpoint_options=("dilate_last_stage",),
    )
)
