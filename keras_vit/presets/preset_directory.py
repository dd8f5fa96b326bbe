"""The preset directory: one format for every model family.

    config.json        {"registered_name": "keras_vit>ViT", "format_version": 2,
                        "config": {constructor arguments, "backbone": {...}},
                        "preprocessor": "preprocessor.json" or null}
    preprocessor.json  the serialized preprocessor (tasks that have one)
    model.weights.h5   the Keras weights
    metadata.json      versions, backend, parameter count, source, the weights
                       file's size and sha256

`registered_name` is the Keras registered name of the class that wrote it;
the backbone (and preprocessor) are nested as `keras.saving.serialize_keras_object`
writes them. A backbone saved alone (`backbone.save_to_preset`) has the same
layout with the backbone's own name and config.

Every file is written into a staging directory unique to the process,
verified (the weights are read back and compared with the model's), then
renamed into place under an inter-process lock, so a reader never sees a
half-written preset and concurrent writers never mix their files. Directories
written before format 2 (`{"class_name": "ViT", "backbone", "classifier"}` and
`{"class_name": "DETR", "config"}`) are still read.
"""

import collections
import datetime
import hashlib
import json
import os

import h5py
import keras
import numpy as np

from keras_vit.presets.registry import serialized
from keras_vit.utils.files import file_lock
from keras_vit.utils.files import replace_directory
from keras_vit.utils.files import staging_directory
from keras_vit.utils.files import write_json_atomically

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
PREPROCESSOR_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 2
# Runtime choices that a preset does not fix: the caller's dtype policy, and
# the layer name and trainability.
_RUNTIME_KEYS = ("name", "trainable", "dtype")


def preset_cache_dir():
    """Where converted presets are cached: `$KERAS_HOME/keras_vit/presets`.

    `KERAS_HOME` defaults to `~/.keras`, as for Keras itself.
    """
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "keras_vit", "presets")


def _strip_runtime(config):
    return {k: v for k, v in config.items() if k not in _RUNTIME_KEYS}


def _strip_nested(serialized):
    """A serialized object without its dtype policy, name and build state."""
    return {
        "registered_name": serialized["registered_name"],
        "class_name": serialized["class_name"],
        "module": serialized.get("module"),
        "config": _strip_runtime(serialized["config"]),
    }


def model_preset_config(model):
    """`(registered name, config, preprocessor config or None)` of a task or backbone."""
    registered = keras.saving.get_registered_name(type(model))
    config = _strip_runtime(model.get_config())
    if "backbone" in config:
        config["backbone"] = _strip_nested(keras.saving.serialize_keras_object(model.backbone))
    preprocessor = config.pop("preprocessor", None)
    if preprocessor is not None:
        preprocessor = _strip_nested(keras.saving.serialize_keras_object(model.preprocessor))
    return registered, config, preprocessor


def preset_metadata(model, metadata=None):
    """Versions, backend, parameter count and date, plus `metadata`."""
    from keras_vit.version import __version__

    info = {
        "keras_vit_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "class": keras.saving.get_registered_name(type(model)),
        "parameter_count": int(model.count_params()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "format_version": FORMAT_VERSION,
    }
    info.update(metadata or {})
    return info


def _write_into(model, directory, metadata):
    registered, config, preprocessor = model_preset_config(model)
    write_json_atomically(
        os.path.join(directory, CONFIG_FILE),
        {
            "registered_name": registered, "format_version": FORMAT_VERSION, "config": config,
            # Recorded so that a preset whose preprocessor.json goes missing is refused, not run on raw pixels.
            "preprocessor": PREPROCESSOR_FILE if preprocessor is not None else None,
        },
    )
    if preprocessor is not None:
        write_json_atomically(os.path.join(directory, PREPROCESSOR_FILE), preprocessor)
    weights = os.path.join(directory, WEIGHTS_FILE)
    model.save_weights(weights)
    verify_weights_file(model, weights)
    from keras_vit.presets.download import sha256_of

    info = preset_metadata(model, metadata)
    info["weights_bytes"] = os.path.getsize(weights)
    info["weights_sha256"] = sha256_of(weights)
    write_json_atomically(os.path.join(directory, METADATA_FILE), info)


def write_preset(model, directory, metadata=None, locked=False):
    """Writes `model` as a preset directory, atomically (see the module docstring).

    Args:
        model: a keras_vit task or backbone.
        directory: the preset directory; an existing one is replaced whole.
        metadata: extra JSON-serializable entries for `metadata.json`.
        locked: the caller already holds `file_lock(directory)`.
    """
    directory = os.path.abspath(os.fspath(directory))
    staging = staging_directory(directory)
    try:
        _write_into(model, staging, metadata)
        if locked:
            replace_directory(staging, directory)
        else:
            with file_lock(directory):
                replace_directory(staging, directory)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _h5_arrays(path):
    """The model tensors of a Keras `.weights.h5` file, in file order.

    The optimizer's state, which Keras stores beside the weights of a
    compiled model (top-level group `optimizer`), is left out.
    """
    arrays = []
    with h5py.File(path, "r") as f:
        for key in f:
            if key == "optimizer":
                continue
            item = f[key]
            if isinstance(item, h5py.Dataset):
                arrays.append(np.asarray(item))
            else:
                item.visititems(lambda name, obj: arrays.append(np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def _fingerprint(array):
    array = np.ascontiguousarray(array)
    return array.shape, array.dtype.str, hashlib.sha1(array.tobytes()).hexdigest()


def _saved_values(model):
    """The values Keras writes for `model`'s weights: a layer with LoRA
    enabled (`keras_vit.tuning.prepare(model, "lora")`) saves its kernel with
    the LoRA update merged in, and not the factors."""
    merged, factors = {}, set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if getattr(layer, "lora_enabled", False):
            merged[id(layer._kernel)] = layer
            factors |= {id(layer.lora_kernel_a), id(layer.lora_kernel_b)}
    for variable in model.weights:
        if id(variable) in factors:
            continue
        yield merged[id(variable)].kernel if id(variable) in merged else variable.value


def verify_weights_file(model, path):
    """Reads a just-written weights file back and compares it with the model's values.

    The comparison is of multisets of (shape, dtype, sha1 of the bytes): the
    file's tensor order is the format's business, its content ours. Every
    weight must be in the file (Keras also stores states that are not
    weights, such as dropout seeds).
    """
    stored = collections.Counter(_fingerprint(a) for a in _h5_arrays(path))
    expected = collections.Counter(_fingerprint(keras.ops.convert_to_numpy(v)) for v in _saved_values(model))
    missing = sum((expected - stored).values())
    if missing:
        raise OSError(
            f"{path} does not hold what was written ({missing} of {sum(expected.values())} tensors "
            "differ). The disk or another writer changed it; nothing was kept."
        )


def read_json_file(path, what):
    """A JSON file's content, or a ValueError naming the file and what to do."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}). It is the {what}; it may be half-written "
            "or damaged: write the preset again (save_to_preset), or delete the directory "
            "if it is a cache entry so that it is fetched again."
        ) from error


def read_preset_directory(directory, load_weights=True):
    """`(registered name, config, weights path or None)` of a preset directory.

    The config is the class's constructor arguments (backbone and preprocessor
    serialized), whether the directory was written in format 2 or before it.
    """
    directory = os.fspath(directory)
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(
            f"{directory} is not a preset directory: it has no {CONFIG_FILE}. "
            "Write one with `model.save_to_preset(directory)`."
        )
    saved = read_json_file(config_path, "preset's config")
    if not isinstance(saved, dict):
        raise ValueError(f"{config_path} must hold a JSON object. Received: {type(saved).__name__}.")
    if "registered_name" in saved and "config" in saved:
        registered, config = saved["registered_name"], dict(saved["config"])
    elif saved.get("class_name") in _LEGACY_READERS:
        registered, config = _LEGACY_READERS[saved["class_name"]](saved, directory)
    else:
        raise ValueError(
            f"{config_path} is not a keras_vit preset config: it has keys {sorted(saved)}, "
            "not 'registered_name' and 'config' (or a pre-2 'class_name'). If another library "
            "wrote it, load it with that library, or pass the checkpoint file itself."
        )
    preprocessor_path = os.path.join(directory, PREPROCESSOR_FILE)
    if "preprocessor" not in config and os.path.isfile(preprocessor_path):
        preprocessor = read_json_file(preprocessor_path, "preset's preprocessor config")
        if "registered_name" not in preprocessor:  # written before format 2: the arguments alone
            preprocessor = serialized("keras_vit>ViTImagePreprocessor", preprocessor)
        config["preprocessor"] = preprocessor
    elif "preprocessor" not in config and saved.get("preprocessor") == PREPROCESSOR_FILE:
        raise ValueError(
            f"{directory} was written with a preprocessor ({PREPROCESSOR_FILE}), which is missing: without it raw "
            "pixels would go into the network unscaled and every output would change. Restore the file or write "
            "the preset again."
        )
    weights = os.path.join(directory, WEIGHTS_FILE)
    if load_weights:
        if not os.path.isfile(weights):
            raise ValueError(
                f"Preset directory {directory} has no {WEIGHTS_FILE}. Pass "
                "load_weights=False to build the architecture alone."
            )
        _check_weights_file(directory, weights)
    return registered, config, (weights if load_weights else None)


def read_metadata(directory):
    """A preset directory's `metadata.json` as a dict ({} for a preset name or
    a directory without one; a recipe's holds its run config and class names)."""
    path = os.path.join(os.path.expanduser(os.fspath(directory)), METADATA_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): write the preset again.") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} must hold a JSON object. Received: {type(metadata).__name__}")
    return metadata


def _check_weights_file(directory, weights):
    """The weights file against what `metadata.json` recorded when it was
    written: its size, then its sha256 (about a second per GB; not
    skippable: a same-size foreign or changed file would otherwise load
    silently). Presets without a record (written by hand) are not checked."""
    metadata_path = os.path.join(directory, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        return
    try:
        with open(metadata_path, encoding="utf-8") as f:
            record = json.load(f)
        expected, digest = record.get("weights_bytes"), record.get("weights_sha256")
    except (ValueError, OSError, AttributeError):
        return
    actual = os.path.getsize(weights)
    if expected is not None and actual != expected:
        raise ValueError(
            f"{weights} has {actual} bytes but was written with {expected}: it is truncated "
            "or was changed. Delete the preset directory (for a cache entry, it is fetched "
            "again) or write it again."
        )
    if digest is not None:
        from keras_vit.presets.download import sha256_of

        found = sha256_of(weights)
        if found != digest:
            raise ValueError(
                f"{weights} has sha256 {found} but {METADATA_FILE} records {digest}: the weights were changed or "
                "replaced after the preset was written. Delete the preset directory (a cache entry is fetched "
                "again) or write it again from a model you trust."
            )


def _legacy_vit(saved, directory):
    if not isinstance(saved.get("backbone"), dict) or not isinstance(saved.get("classifier"), dict):
        raise ValueError(f"{directory}/{CONFIG_FILE} names class ViT but lacks 'backbone' or 'classifier'.")
    config = {"backbone": serialized("keras_vit>ViTBackbone", saved["backbone"]), **saved["classifier"]}
    return "keras_vit>ViT", config


def _legacy_detr(saved, directory):
    config = dict(saved.get("config") or {})
    if not isinstance(config.get("backbone"), dict):
        raise ValueError(f"{directory}/{CONFIG_FILE} names class DETR but lacks its backbone config.")
    config["backbone"] = serialized("keras_vit>ResNetBackbone", config["backbone"])
    return "keras_vit>DETR", config


_LEGACY_READERS = {"ViT": _legacy_vit, "DETR": _legacy_detr}


def load_weights_file(model, path):
    """`model.load_weights(path)` with errors that say what to do.

    The file must hold exactly the model's tensors: Keras alone would load a
    deeper model's file into a shallower model without a word.
    """
    try:
        stored = len(_h5_arrays(path))
    except OSError as error:
        raise ValueError(
            f"Cannot read the weights file {path} ({error}): it is truncated or damaged. "
            "Delete the preset directory (a cache entry is then fetched again) or write it again."
        ) from error
    if stored != len(model.weights):
        raise ValueError(
            f"The weights file {path} holds {stored} tensors but the architecture being built has "
            f"{len(model.weights)}: it does not match the architecture ({type(model).__name__}). Build the "
            f"model with the {CONFIG_FILE} saved next to the weights."
        )
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"The weights file {path} does not match the architecture being built "
            f"({type(model).__name__} with config {model.get_config()}). Build the model "
            f"with the {CONFIG_FILE} saved next to the weights, or pass the matching "
            f"arguments. Original error: {error}"
        ) from error
    except OSError as error:
        raise ValueError(
            f"Cannot read the weights file {path} ({error}): it is truncated or damaged. "
            "Delete the preset directory (a cache entry is then fetched again) or write it again."
        ) from error


def cache_entry(name, source, default_source):
    """The cache directory of a preset name fetched from `source`."""
    suffix = "" if source == default_source else f"_{source}"
    return os.path.join(preset_cache_dir(), name + suffix)


def cached_preset(family, name, source):
    """The cached preset directory of `name`, fetched and converted once.

    Concurrent processes wait on one lock per entry: the first fetches and
    writes it, the others then read what it wrote.
    """
    directory = cache_entry(name, source, family.sources[0])
    with file_lock(directory):
        if os.path.isfile(os.path.join(directory, WEIGHTS_FILE)) and os.path.isfile(os.path.join(directory, METADATA_FILE)):
            return directory
        model, metadata = family.fetch(name, source)
        write_preset(model, directory, metadata={"preset": name, **metadata}, locked=True)
    return directory
