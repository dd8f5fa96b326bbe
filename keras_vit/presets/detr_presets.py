"""DETR presets: the four COCO releases, from the original `.pth` files or transformers.

A preset is fetched once, converted in memory (every tensor placed and
shape-checked) and cached as a preset directory under
`preset_cache_dir()/<name>` (`config.json` with the model config,
`model.weights.h5`, `metadata.json`); later calls read the cache.

Sources: the original releases at `$KERAS_VIT_DETR_ENDPOINT` (default
`https://dl.fbaipublicfiles.com/detr`, file names carry the first 8 hex digits
of their sha256, which is checked) and the transformers ports on the Hugging
Face hub (`source="transformers"`).
"""

import json
import os

import numpy as np

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


def _table_config(name):
    entry = DETR_PRESETS[name]
    return {
        "backbone": {"depth": entry["depth"], "dilate_last_stage": entry["dilate_last_stage"]},
        "num_classes": COCO_NUM_CLASSES,
    }


def build_detr(config, **overrides):
    """A built DETR from `{"backbone": ResNetBackbone kwargs, **DETR kwargs}`."""
    from keras_vit.backbones.resnet_backbone import ResNetBackbone
    from keras_vit.models.detr import DETR

    config = dict(config)
    dtype = overrides.get("dtype")
    backbone = ResNetBackbone(**config.pop("backbone"), dtype=dtype)
    model = DETR(backbone, **{**config, **overrides})
    model({"images": np.zeros((1, 64, 64, 3), "float32"), "pixel_mask": np.ones((1, 64, 64), bool)})
    return model


def _checkpoint_config(arrays, hf_config=None, dilate_last_stage=None, path=""):
    from keras_vit.conversion.detr import detr_config_from_checkpoint

    heads = 8
    if hf_config is not None:
        heads = hf_config.get("encoder_attention_heads", heads)
        if dilate_last_stage is None:
            dilate_last_stage = bool(hf_config.get("dilation", False))
    if dilate_last_stage is None:
        dilate_last_stage = "dc5" in os.path.basename(path).lower()
    return detr_config_from_checkpoint(arrays, num_heads=heads, dilate_last_stage=dilate_last_stage)


def _fetch(name, source):
    """Downloads and converts a table preset into the cache; returns its directory."""
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.detr import load_detr_state_dict
    from keras_vit.presets.download import download
    from keras_vit.presets.download import hf_file_url
    from keras_vit.presets.loading import write_atomically

    entry = DETR_PRESETS[name]
    if source == "original":
        filename = entry["original"]
        url = f"{detr_endpoint()}/{filename}"
        path = download(url, filename=filename, sha256=filename.rsplit("-", 1)[1].split(".")[0])
    else:
        url = hf_file_url(entry["transformers"], "model.safetensors")
        path = download(url, filename=entry["transformers"].replace("/", "--") + ".safetensors")
    arrays = read_checkpoint(path)
    config = _checkpoint_config(arrays, dilate_last_stage=entry["dilate_last_stage"])
    expected = _table_config(name)
    if config["backbone"]["depth"] != expected["backbone"]["depth"] or config["num_classes"] != COCO_NUM_CLASSES:
        raise ValueError(
            f"The checkpoint at {url} does not hold {name} (found depth {config['backbone']['depth']}, "
            f"{config['num_classes']} classes)."
        )
    model = build_detr(config)
    load_detr_state_dict(model, arrays)
    directory = _cache_directory(name, source)
    write_atomically(directory, lambda staging: save_detr_preset(model, staging, metadata={"preset": name, "source": url}))
    return directory


def _cache_directory(name, source):
    from keras_vit.presets.loading import preset_cache_dir

    return os.path.join(preset_cache_dir(), name + ("" if source == "original" else "_transformers"))


def save_detr_preset(model, directory, metadata=None):
    """Writes a DETR as a preset directory (config.json, model.weights.h5, metadata.json)."""
    from keras_vit.models.detr import DETR
    from keras_vit.presets.loading import preset_metadata

    if not isinstance(model, DETR):
        raise TypeError(f"model must be a keras_vit.DETR. Received: {type(model).__name__}")
    os.makedirs(directory, exist_ok=True)
    config = model.get_config()
    config["backbone"] = {
        k: v for k, v in model.backbone.get_config().items() if k in ("depth", "dilate_last_stage", "stem_filters", "stage_filters")
    }
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"class_name": "DETR", "config": config}, f, indent=2)
    model.save_weights(os.path.join(directory, "model.weights.h5"))
    with open(os.path.join(directory, "metadata.json"), "w", encoding="utf-8") as f:
        json.dump(preset_metadata(model, metadata), f, indent=2)


def _read_directory(directory):
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"{directory} is not a DETR preset directory: it has no config.json.")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    if saved.get("class_name") != "DETR":
        raise ValueError(f"{directory} holds a {saved.get('class_name')!r} preset, not a DETR.")
    return saved["config"], os.path.join(directory, "model.weights.h5")


def _transfer(source, target):
    """Copies every variable whose path (below the model name) and shape match."""
    by_path = {v.path.split("/", 1)[-1]: v for v in source.weights}
    copied = 0
    for variable in target.weights:
        match = by_path.get(variable.path.split("/", 1)[-1])
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(match.value)
            copied += 1
    return copied


def load_detr_preset(preset, source="original", num_classes=None, load_weights=True, dilate_last_stage=None, **overrides):
    """See `DETR.from_preset`.

    Args:
        preset: a name in `DETR_PRESETS`, a preset directory, a checkpoint
            file (`.pth` original release, `.safetensors`/`.bin` transformers;
            a `config.json` beside it is read) or `hf://org/name`.
        source: for names, `"original"` (the `.pth` release) or
            `"transformers"` (the hub port).
        num_classes: a new class count; every weight but the class head's is kept.
        load_weights: False builds the architecture with random weights.
        dilate_last_stage: for checkpoint files, whether it is a DC5 model
            (read from `config.json` or a "dc5" in the file name otherwise).
        **overrides: other DETR arguments (`bounding_box_format`, `matching`,
            `dropout_rate`, loss weights, `dtype`).
    """
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.checkpoint import read_hf_config
    from keras_vit.conversion.detr import load_detr_state_dict

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}. Received: source={source!r}")
    arrays, weights_file = None, None
    text = os.fspath(preset) if isinstance(preset, (str, os.PathLike)) else None
    if text is None:
        raise TypeError(f"preset must be a name, a directory or a file path. Received: {preset!r}")
    if text in DETR_PRESETS:
        if not load_weights:
            config = _table_config(text)
        else:
            directory = _cache_directory(text, source)
            if not os.path.isfile(os.path.join(directory, "model.weights.h5")):
                directory = _fetch(text, source)
            config, weights_file = _read_directory(directory)
    elif os.path.isdir(text):
        config, weights_file = _read_directory(text)
    elif text.startswith("hf://") or os.path.isfile(text):
        if text.startswith("hf://"):
            from keras_vit.presets.download import download
            from keras_vit.presets.download import hf_file_url

            repo = text[len("hf://"):].strip("/")
            stem = repo.replace("/", "--")
            path = download(hf_file_url(repo, "model.safetensors"), filename=f"{stem}.safetensors")
            with open(download(hf_file_url(repo, "config.json"), filename=f"{stem}.config.json"), encoding="utf-8") as f:
                hf_config = json.load(f)
        else:
            path, hf_config = text, read_hf_config(text)
        arrays = read_checkpoint(path)
        config = _checkpoint_config(arrays, hf_config, dilate_last_stage, path)
    else:
        import difflib

        close = difflib.get_close_matches(text, list(DETR_PRESETS), n=1, cutoff=0.3)
        hint = f" The closest match is {close[0]!r}." if close else ""
        raise ValueError(
            f"Unknown DETR preset {text!r}: not one of {sorted(DETR_PRESETS)}, a preset directory or a "
            f"checkpoint file.{hint}"
        )
    model = build_detr(config, **overrides)
    if load_weights:
        if arrays is not None:
            load_detr_state_dict(model, arrays)
        elif weights_file is not None:
            model.load_weights(weights_file)
    if num_classes is not None and num_classes != model.num_classes:
        target = build_detr({**config, "num_classes": num_classes}, **overrides)
        _transfer(model, target)
        model = target
    return model
