"""The Segmenter family: the official ADE20K releases (rstrudel/segmenter)
and mmsegmentation's, and the registration with the shared loader.

A preset is fetched once, converted in memory (every tensor placed and
shape-checked; the official encoder's unused 1000-class classifier is left
out) and cached as a preset directory:

- `source="official"` (default): `{endpoint}/{release}/checkpoint.pth` with
  its `variant.yml` (head counts, normalisation). These files carry no hash
  in their names, so none is checked.
- `source="mmseg"` (Seg-T, S and B mask models): mmsegmentation's retrained
  releases, whose file names end in the first 8 hex digits of their sha256,
  which is checked. They are different weights, with their own scores
  (mmsegmentation's metafile), LayerNorm epsilon 1e-6 in the backbone, and
  decoder dropout 0 / drop-path 0.1 (the official: 0.1 / 0).

Every release normalises pixels with mean = std = 127.5 (the official "vit"
normalisation, mmsegmentation's data preprocessor).

Endpoints: `$KERAS_VIT_SEGMENTER_ENDPOINT` (default
`https://www.rocq.inria.fr/cluster-willow/rstrudel/segmenter/checkpoints/ade20k`)
and `$KERAS_VIT_MMSEG_ENDPOINT` (default
`https://download.openmmlab.com/mmsegmentation/v0.5/segmenter`).
"""

import copy
import os

import keras

from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import image_preprocessor_config
from keras_vit.presets.registry import register_family
from keras_vit.presets.registry import serialized
from keras_vit.presets.registry import sized_override
from keras_vit.presets.registry import transfer_resizing_positions

_OFFICIAL = "https://www.rocq.inria.fr/cluster-willow/rstrudel/segmenter/checkpoints/ade20k"
_MMSEG = "https://download.openmmlab.com/mmsegmentation/v0.5/segmenter"

# ViT sizes (ViT paper Table 1; Ti from DeiT): width, blocks, heads.
_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}


def _entry(description, size, patch, decoder, crop, official, mmseg=None):
    return {
        "description": description, "size": size, "patch_size": patch, "decoder": decoder, "image_size": crop,
        "official": official, "mmseg": mmseg,
    }


SEGMENTER_PRESETS = {
    "seg_tiny_mask": _entry(
        "Seg-T-Mask/16 (ViT-Ti/16, mask transformer), ADE20K, 150 classes, 512: 38.1 mIoU single-scale "
        "(mmsegmentation's retrained release: 39.99).",
        "tiny", 16, "mask_transformer", 512, "seg_tiny_mask",
        "segmenter_vit-t_mask_8x1_512x512_160k_ade20k/"
        "segmenter_vit-t_mask_8x1_512x512_160k_ade20k_20220105_151706-ffcf7509.pth",
    ),
    "seg_small_mask": _entry(
        "Seg-S-Mask/16 (ViT-S/16, mask transformer), ADE20K, 150 classes, 512: 45.3 mIoU single-scale "
        "(mmsegmentation: 46.19).",
        "small", 16, "mask_transformer", 512, "seg_small_mask",
        "segmenter_vit-s_mask_8x1_512x512_160k_ade20k/"
        "segmenter_vit-s_mask_8x1_512x512_160k_ade20k_20220105_151706-511bb103.pth",
    ),
    "seg_base_mask": _entry(
        "Seg-B-Mask/16 (ViT-B/16, mask transformer), ADE20K, 150 classes, 512: 48.5 mIoU single-scale "
        "(mmsegmentation: 49.6).",
        "base", 16, "mask_transformer", 512, "seg_base_mask",
        "segmenter_vit-b_mask_8x1_512x512_160k_ade20k/"
        "segmenter_vit-b_mask_8x1_512x512_160k_ade20k_20220105_151706-bc533b08.pth",
    ),
    "seg_base_8_linear": _entry(
        "Seg-B/8 (ViT-B/8, linear decoder), ADE20K, 150 classes, 512: 49.5 mIoU single-scale.",
        "base", 8, "linear", 512, "seg_base_patch8",
    ),
    "seg_large_mask": _entry(
        "Seg-L-Mask/16 (ViT-L/16, mask transformer), ADE20K, 150 classes, 640: 51.8 mIoU single-scale.",
        "large", 16, "mask_transformer", 640, "seg_large_mask_640",
    ),
}
SOURCES = ("official", "mmseg")
TASK = "keras_vit>Segmenter"


def official_endpoint():
    return os.environ.get("KERAS_VIT_SEGMENTER_ENDPOINT", _OFFICIAL).rstrip("/")


def mmseg_endpoint():
    return os.environ.get("KERAS_VIT_MMSEG_ENDPOINT", _MMSEG).rstrip("/")


def preprocessor_config(size):
    """Segmenter's "vit" normalisation: pixels / 255, mean = std = 0.5."""
    return image_preprocessor_config(size)


def table_config(name, layer_norm_epsilon=1e-5, decoder_dropout=0.1, decoder_drop_path=0.0):
    """The task config of a table preset (no weights), with the official
    training settings (encoder drop-path 0.1)."""
    entry = SEGMENTER_PRESETS[name]
    width, layers, heads = _SIZES[entry["size"]]
    size, patch = entry["image_size"], entry["patch_size"]
    backbone = {
        "image_shape": (size, size, 3), "patch_size": (patch, patch), "hidden_dim": width, "num_layers": layers,
        "num_heads": heads, "mlp_dim": 4 * width, "layer_norm_epsilon": layer_norm_epsilon,
        "gelu_approximate": False, "drop_path_rate": 0.1,
    }
    config = {
        "backbone": serialized("keras_vit>ViTBackbone", backbone), "num_classes": 150, "decoder": entry["decoder"],
        "preprocessor": preprocessor_config(size),
    }
    if entry["decoder"] == "mask_transformer":
        config.update(
            decoder_layers=2, decoder_heads=None, decoder_dropout=decoder_dropout,
            decoder_drop_path=decoder_drop_path, decoder_epsilon=1e-5,
        )
    return config


def _import_models():
    from keras_vit.models import segmenter  # noqa: F401  (registers the class)


def build(config):
    _import_models()
    return keras.saving.get_registered_object(TASK).from_config(copy.deepcopy(config))


def _read_yaml(path):
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def read_variant(path):
    """The `variant.yml` written beside an official checkpoint, or None."""
    variant = os.path.join(os.path.dirname(os.fspath(path)), "variant.yml")
    return _read_yaml(variant) if os.path.isfile(variant) else None


def _fetch(name, source):
    """Downloads and converts a table preset; returns `(model, metadata)`."""
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.segmenter import load_segmenter
    from keras_vit.presets.download import download
    from keras_vit.presets.download import name_hash_prefix

    entry = SEGMENTER_PRESETS[name]
    if source == "official":
        release = entry["official"]
        url = f"{official_endpoint()}/{release}/checkpoint.pth"
        path = download(url, filename=f"segmenter--{release}--checkpoint.pth")
        variant_path = download(f"{official_endpoint()}/{release}/variant.yml", filename=f"segmenter--{release}--variant.yml")
        config = table_config(name)
        _check_variant(name, variant_path, config)
    else:
        if entry["mmseg"] is None:
            ported = sorted(n for n, e in SEGMENTER_PRESETS.items() if e["mmseg"])
            raise ValueError(
                f"mmsegmentation has no release of {name!r}; its presets with source='mmseg' are {ported}. "
                "Use source='official'."
            )
        url = f"{mmseg_endpoint()}/{entry['mmseg']}"
        filename = os.path.basename(entry["mmseg"])
        path = download(url, filename=filename, sha256=name_hash_prefix(filename))
        config = table_config(name, layer_norm_epsilon=1e-6, decoder_dropout=0.0, decoder_drop_path=0.1)
    model = build(config)
    load_segmenter(model, read_checkpoint(path))
    return model, {"source": url}


def _check_variant(name, path, config):
    """The downloaded `variant.yml` agrees with the table (sizes, heads, patch, normalisation)."""
    net = _read_yaml(path).get("net_kwargs", {})
    backbone = config["backbone"]["config"]
    expected = {
        "d_model": backbone["hidden_dim"], "n_layers": backbone["num_layers"], "n_heads": backbone["num_heads"],
        "patch_size": backbone["patch_size"][0], "normalization": "vit",
    }
    wrong = {k: (net[k], v) for k, v in expected.items() if k in net and net[k] != v}
    if wrong:
        raise ValueError(f"The downloaded variant.yml of {name!r} disagrees with keras_vit's table: {wrong}.")


def _read_checkpoint(arrays, path, hf_config, kwargs):
    from keras_vit.conversion.segmenter import official_arrays
    from keras_vit.conversion.segmenter import segmenter_config

    num_heads = kwargs.pop("num_heads", None)
    arrays, found = official_arrays(arrays)
    if arrays is None:
        return None
    variant = read_variant(path) if found == "official" else None
    config = segmenter_config(arrays, found, variant, num_heads)
    size = config["backbone"]["image_shape"][:2]
    config["backbone"] = serialized(
        "keras_vit>ViTBackbone", {**config["backbone"], "gelu_approximate": False}
    )
    config["preprocessor"] = preprocessor_config(size)
    return config


def _load_checkpoint(model, arrays):
    from keras_vit.conversion.segmenter import load_segmenter

    load_segmenter(model, arrays)


SEGMENTER_FAMILY = register_family(
    PresetFamily(
        name="segmenter",
        task=TASK,
        backbone="keras_vit>ViTBackbone",
        presets=SEGMENTER_PRESETS,
        table_config=table_config,
        fetch=_fetch,
        build=build,
        override=sized_override(TASK, ("num_classes",), _import_models),
        transfer=transfer_resizing_positions,
        read_checkpoint=_read_checkpoint,
        load_checkpoint=_load_checkpoint,
        sources=SOURCES,
        checkpoint_options=("num_heads",),
    )
)
