"""Preset directories: build, load, resize and save ViT models.

A preset directory holds:

- `config.json`: `{"class_name": "ViT", "backbone": {...}, "classifier": {...}}`,
  the constructor arguments, readable and editable;
- `model.weights.h5`: the Keras weights;
- `preprocessor.json`: the `ViTImagePreprocessor` arguments;
- `metadata.json`: versions, backend, parameter count and where the weights
  came from.
"""

import datetime
import difflib
import inspect
import json
import os

import keras

from keras_vit.backbones.vit_backbone import ViTBackbone
from keras_vit.layers.image_preprocessor import ViTImagePreprocessor
from keras_vit.models.vit import ViT
from keras_vit.presets.vit_presets import VIT_PRESETS
from keras_vit.utils.validation import check_pair

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
PREPROCESSOR_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"

_BACKBONE_ARGS = [
    p for p in inspect.signature(ViTBackbone.__init__).parameters
    if p not in ("self", "kwargs", "dtype")
]
_CLASSIFIER_ARGS = [
    p for p in inspect.signature(ViT.__init__).parameters
    if p not in ("self", "kwargs", "backbone", "preprocessor", "dtype")
]


def list_presets(family="vit"):
    """Names of the built-in presets of a family (`"vit"` or `"detr"`), sorted."""
    if family == "detr":
        from keras_vit.presets.detr_presets import DETR_PRESETS

        return sorted(DETR_PRESETS)
    if family != "vit":
        raise ValueError(f'family must be "vit" or "detr". Received: family={family!r}')
    return sorted(VIT_PRESETS)


def preset_cache_dir():
    """Where converted presets are cached: `$KERAS_HOME/keras_vit/presets`.

    `KERAS_HOME` defaults to `~/.keras`, as for Keras itself.
    """
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "keras_vit", "presets")


def _unknown_preset_error(preset):
    names = list_presets()
    close = difflib.get_close_matches(str(preset), names, n=1, cutoff=0.3)
    hint = f" The closest match is {close[0]!r}." if close else ""
    return ValueError(
        f"Unknown preset {preset!r}: not a built-in preset name and not a "
        f"directory.{hint} Available presets: {names}"
    )


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def _resolve(preset, load_weights):
    """Returns (config dict, weights path or None)."""
    if not isinstance(preset, (str, os.PathLike)):
        raise TypeError(
            "preset must be a preset name or a directory path. "
            f"Received: preset={preset!r}"
        )
    preset = os.fspath(preset)
    if os.path.isdir(preset):
        return _read_directory(preset, load_weights)
    if preset not in VIT_PRESETS:
        raise _unknown_preset_error(preset)
    cached = os.path.join(preset_cache_dir(), preset)
    if load_weights:
        if not os.path.isfile(os.path.join(cached, WEIGHTS_FILE)):
            fetch_preset(preset)
        return _read_directory(cached, load_weights)
    return _table_config(preset), None


def _table_config(name):
    entry = VIT_PRESETS[name]
    return {
        "class_name": "ViT",
        "backbone": dict(entry["backbone"]),
        "classifier": dict(entry["classifier"]),
        "preprocessor": dict(entry["preprocessing"]),
    }


def fetch_preset(name):
    """Downloads a preset's source checkpoint, converts it, caches the preset.

    The checkpoint is read and converted in memory; every tensor's shape is
    checked against the preset's architecture (and the file's sha256 where the
    table knows it) before the converted preset is written to
    `preset_cache_dir()/name`, so later calls need no network.

    Returns:
        The cached preset directory.
    """
    from keras_vit.conversion.checkpoint import load_checkpoint_weights
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.presets.download import download
    from keras_vit.presets.download import hf_file_url

    entry = VIT_PRESETS[name]
    url = hf_file_url(entry["source"], "model.safetensors")
    path = download(
        url,
        filename=entry["source"].replace("/", "--") + ".safetensors",
        sha256=entry.get("sha256"),
    )
    arrays = read_checkpoint(path)
    model = build_from_config(_table_config(name))
    load_checkpoint_weights(model, arrays, entry["format"])
    directory = os.path.join(preset_cache_dir(), name)
    write_atomically(directory, lambda staging: save_preset(model, staging, metadata={"preset": name, "source": url}))
    return directory


def write_atomically(directory, writer):
    """Runs `writer(staging_dir)` and renames the result to `directory`, so a
    half-written preset is never picked up by a later call."""
    import shutil

    staging = directory + ".partial"
    writer(staging)
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.replace(staging, directory)


def _read_directory(directory, load_weights):
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(
            f"{directory} is not a preset directory: it has no {CONFIG_FILE}. "
            "Write one with `model.save_to_preset(directory)`."
        )
    config = _read_json(config_path)
    preprocessor_path = os.path.join(directory, PREPROCESSOR_FILE)
    if os.path.isfile(preprocessor_path):
        config["preprocessor"] = _read_json(preprocessor_path)
    weights = os.path.join(directory, WEIGHTS_FILE)
    if load_weights and not os.path.isfile(weights):
        raise ValueError(
            f"Preset directory {directory} has no {WEIGHTS_FILE}. Pass "
            "load_weights=False to build the architecture alone."
        )
    return config, weights if load_weights else None


def _apply_overrides(config, num_classes, image_size, overrides):
    config = {
        key: dict(value) if isinstance(value, dict) else value
        for key, value in config.items()
    }
    unknown = sorted(set(overrides) - set(_BACKBONE_ARGS) - set(_CLASSIFIER_ARGS) - {"dtype"})
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for from_preset. Backbone arguments: "
            f"{_BACKBONE_ARGS}; classifier arguments: {_CLASSIFIER_ARGS}."
        )
    for key, value in overrides.items():
        if key in _BACKBONE_ARGS:
            config["backbone"][key] = value
        elif key in _CLASSIFIER_ARGS:
            config["classifier"][key] = value
    config["dtype"] = overrides.get("dtype")
    if num_classes is not None:
        config["classifier"]["num_classes"] = num_classes
    if image_size is not None:
        size = check_pair("image_size", image_size)
        channels = config["backbone"]["image_shape"][-1]
        config["backbone"]["image_shape"] = (size[0], size[1], channels)
        if config.get("preprocessor"):
            config["preprocessor"]["image_size"] = size
    return config


def _as_json(value):
    # Tuples and lists compare equal once both went through JSON.
    return json.loads(json.dumps(value))


def build_from_config(config):
    """Builds a `ViT` from a preset config dict (no weights)."""
    dtype = config.get("dtype")
    backbone_args = dict(config["backbone"])
    backbone_args["image_shape"] = tuple(backbone_args["image_shape"])
    backbone = ViTBackbone(**backbone_args, dtype=dtype)
    preprocessor = None
    if config.get("preprocessor"):
        preprocessor = ViTImagePreprocessor(**config["preprocessor"], name="preprocessor")
    return ViT(backbone, preprocessor=preprocessor, dtype=dtype, **config["classifier"])


def load_weights_file(model, path):
    """`model.load_weights(path)` with an error that says what to do on mismatch."""
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"The weights file {path} does not match the architecture being built "
            f"(backbone: {model.backbone.get_config()}, num_classes="
            f"{model.num_classes}). Build the model with the config.json saved next "
            f"to the weights, or pass the matching arguments. Original error: {error}"
        ) from error


def transfer_weights(source, target, method="bicubic", align_corners=False, antialias=True):
    """Copies weights between two ViTs that differ in resolution or head.

    Layers are matched by name. The position embedding is resized to the
    target's grid; the defaults (bicubic, antialiased) are timm's
    `resample_abs_pos_embed`, `antialias=False` gives transformers'
    `interpolate_pos_encoding`, and `method="bilinear", align_corners=True,
    antialias=False` the original ViT code. The head is copied only when its
    shape matches (else it keeps its fresh initialisation, as when fine-tuning
    on new classes).
    """
    for layer in source.backbone.layers:
        if not layer.weights:
            continue
        target_layer = target.backbone.get_layer(layer.name)
        if layer.name == "position_embedding" and layer.grid_size != target_layer.grid_size:
            resized = layer.resized_embedding(
                target_layer.grid_size, method, align_corners, antialias
            )
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


def _from_checkpoint(preset, load_weights):
    """(config, weights loader) for a checkpoint file or an `hf://org/name` repo."""
    from keras_vit.conversion.checkpoint import config_from_checkpoint
    from keras_vit.conversion.checkpoint import load_checkpoint_weights
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.checkpoint import read_hf_config

    if preset.startswith("hf://"):
        from keras_vit.presets.download import download
        from keras_vit.presets.download import hf_file_url

        repo = preset[len("hf://"):].strip("/")
        stem = repo.replace("/", "--")
        path = download(hf_file_url(repo, "model.safetensors"), filename=f"{stem}.safetensors")
        config_path = download(hf_file_url(repo, "config.json"), filename=f"{stem}.config.json")
        with open(config_path, encoding="utf-8") as f:
            hf_config = json.load(f)
    else:
        path, hf_config = preset, read_hf_config(preset)
    arrays = read_checkpoint(path)
    if hf_config is not None and "architecture" in hf_config:
        hf_config = None  # timm's config.json: sizes come from the tensors
    config = config_from_checkpoint(arrays, hf_config=hf_config)
    config["preprocessor"] = {"image_size": config["backbone"]["image_shape"][:2]}

    def load(model):
        load_checkpoint_weights(model, arrays)

    return config, (load if load_weights else None)


def load_preset(preset, num_classes=None, image_size=None, load_weights=True, **overrides):
    """Builds a `ViT` from a preset name, preset directory, checkpoint file or
    `hf://org/name`; see `ViT.from_preset`."""
    preset_path = os.fspath(preset) if isinstance(preset, (str, os.PathLike)) else None
    if preset_path is not None and (
        preset_path.startswith("hf://")
        or (os.path.isfile(preset_path) and preset_path.lower().endswith((".npz", ".safetensors", ".pth", ".bin", ".pt")))
    ):
        config, weights = _from_checkpoint(preset_path, load_weights)
    else:
        config, weights = _resolve(preset, load_weights)
    # Sizes that the weights fix (num_heads cannot be read off timm tensors)
    # apply before the weights load; the rest is carried over afterwards.
    if "num_heads" in overrides:
        config["backbone"]["num_heads"] = overrides.pop("num_heads")
    target_config = _apply_overrides(config, num_classes, image_size, overrides)
    if weights is None:
        return build_from_config(target_config)
    native = build_from_config({**config, "dtype": target_config.get("dtype")})
    if callable(weights):
        weights(native)
    else:
        load_weights_file(native, weights)
    if _as_json(target_config["backbone"]) == _as_json(config["backbone"]) and (
        _as_json(target_config["classifier"]) == _as_json(config["classifier"])
    ):
        return native
    model = build_from_config(target_config)
    transfer_weights(native, model)
    return model


def save_preset(model, directory, metadata=None):
    """Writes `model` as a preset directory (see the module docstring)."""
    if not isinstance(model, ViT):
        raise TypeError(f"model must be a keras_vit.ViT. Received: {type(model).__name__}")
    os.makedirs(directory, exist_ok=True)
    backbone_config = {k: model.backbone.get_config()[k] for k in _BACKBONE_ARGS}
    classifier_config = {k: getattr(model, k) for k in _CLASSIFIER_ARGS}
    _write_json(
        os.path.join(directory, CONFIG_FILE),
        {"class_name": "ViT", "backbone": backbone_config, "classifier": classifier_config},
    )
    if model.preprocessor is not None:
        preprocessor_config = model.preprocessor.get_config()
        for key in ("name", "trainable", "dtype"):
            preprocessor_config.pop(key, None)
        _write_json(os.path.join(directory, PREPROCESSOR_FILE), preprocessor_config)
    model.save_weights(os.path.join(directory, WEIGHTS_FILE))
    _write_json(os.path.join(directory, METADATA_FILE), preset_metadata(model, metadata))


def preset_metadata(model, metadata=None):
    """Versions, backend, parameter count and date, plus `metadata`."""
    from keras_vit.version import __version__

    info = {
        "keras_vit_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "parameter_count": int(model.count_params()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(metadata or {})
    return info
