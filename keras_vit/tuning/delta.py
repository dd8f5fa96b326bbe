"""Tuned-weights files: only what fine-tuning changed, loadable on the base.

VPT's storage argument: a task tuned with prompts, adapters, LoRA or biases
differs from its base preset by a few thousand numbers, so a task can be kept
as those alone (kilobytes to a few MB) plus the name of the base.

The file is a safetensors file (arrays only: loading never runs code) whose
header metadata holds the base preset, the task class, the `from_preset`
arguments that rebuild the task's shape (class count, image size), the
tuning method with its options, and a sha256 over the base's frozen weights,
checked when the delta is loaded so a delta never lands on a different base.
"""

import hashlib
import json
import os

import keras
import numpy as np

FORMAT = "keras_vit.delta/1"


def frozen_weights_sha256(model):
    """sha256 over the relative path, dtype, shape and bytes of every weight
    `model` does not train, in path order."""
    from keras_vit.presets.registry import relative_path

    digest = hashlib.sha256()
    frozen = sorted(
        (relative_path(model, v), v) for v in model.weights if not v.trainable and not v.name.startswith("lora_kernel")
    )
    for path, variable in frozen:
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value))
        digest.update(f"{path}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _rebuild_arguments(model):
    """`from_preset` arguments that give the base the tuned task's shape."""
    arguments = {}
    if isinstance(getattr(model, "num_classes", None), int):
        arguments["num_classes"] = model.num_classes
    image_shape = getattr(model.backbone, "image_shape", None)
    if image_shape is not None:
        arguments["image_size"] = [int(image_shape[0]), int(image_shape[1])]
    return arguments


def save_delta(model, path, base):
    """Writes the weights `model` trains (after `prepare`) to `path`.

    Args:
        model: a model returned by `keras_vit.tuning.prepare`, trained.
        path: the file to write (`.safetensors`), atomically.
        base: the preset the model was prepared from: a preset name or a
            preset directory; `load_delta` loads it again.

    Returns:
        The metadata written (a dict).
    """
    from safetensors.numpy import save_file

    from keras_vit.presets.registry import relative_path
    from keras_vit.utils.files import atomic_file
    from keras_vit.utils.files import commit_file
    from keras_vit.version import __version__

    tuning = getattr(model, "_keras_vit_tuning", None)
    if tuning is None:
        raise ValueError("model was not prepared with keras_vit.tuning.prepare; save it with save_to_preset instead.")
    if not isinstance(base, (str, os.PathLike)):
        raise TypeError(f"base must be a preset name or directory. Received: base={base!r}")
    base = os.fspath(base)
    if os.path.isdir(base):
        base = os.path.abspath(base)
    tensors = {
        relative_path(model, v): np.ascontiguousarray(keras.ops.convert_to_numpy(v.value))
        for v in model.trainable_weights
    }
    metadata = {
        "format": FORMAT,
        "keras_vit_version": __version__,
        "class": keras.saving.get_registered_name(type(model)),
        "base": base,
        "base_frozen_sha256": frozen_weights_sha256(model),
        "from_preset": _rebuild_arguments(model),
        "method": list(tuning["method"]),
        "options": tuning["options"],
    }
    staging = atomic_file(os.fspath(path))
    try:
        save_file(tensors, staging, metadata={"keras_vit": json.dumps(metadata, sort_keys=True)})
        commit_file(staging, os.fspath(path))
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
    return metadata


def read_delta(path):
    """`(metadata, {relative path: array})` of a delta file, checked."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No delta file at {path!r}. Write one with keras_vit.tuning.save_delta.")
    try:
        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
        arrays = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a keras_vit delta file (a safetensors file): {error}") from None
    try:
        metadata = json.loads(header["keras_vit"])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{path} is a safetensors file without keras_vit delta metadata.") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} has delta format {metadata.get('format')!r}; this keras_vit reads {FORMAT!r}.")
    return metadata, arrays


def load_delta(path, base=None):
    """Rebuilds a tuned model: the base preset, prepared with the recorded
    method, with the delta's weights.

    Args:
        path: a file written by `save_delta`.
        base: the base preset (name or directory); default the one recorded.
            Its frozen weights must be those the delta was tuned on (a sha256
            checks it).

    Returns:
        The tuned task model, equal to the one saved.
    """
    from keras_vit.presets.registry import relative_path
    from keras_vit.tuning.prepare import prepare

    metadata, arrays = read_delta(path)
    base = metadata["base"] if base is None else base
    cls = keras.saving.get_registered_object(metadata["class"])
    if cls is None:
        raise ValueError(f"{path} was saved from {metadata['class']!r}, a class this keras_vit does not have.")
    model = cls.from_preset(base, **metadata["from_preset"])
    model = prepare(model, metadata["method"], **metadata["options"])
    digest = frozen_weights_sha256(model)
    if digest != metadata["base_frozen_sha256"]:
        raise ValueError(
            f"The delta {path} was tuned on other base weights than {base!r}'s (sha256 of the frozen weights "
            f"{digest[:12]}... vs {metadata['base_frozen_sha256'][:12]}... recorded). Pass the base it was made "
            f"from: base={metadata['base']!r}."
        )
    by_path = {relative_path(model, v): v for v in model.trainable_weights}
    missing = sorted(set(by_path) - set(arrays))
    extra = sorted(set(arrays) - set(by_path))
    if missing or extra:
        raise ValueError(f"{path} does not fit the prepared model: missing {missing[:5]}, unexpected {extra[:5]}.")
    for key, variable in by_path.items():
        if tuple(arrays[key].shape) != tuple(variable.shape):
            raise ValueError(f"{path}: {key} has shape {arrays[key].shape}, the model needs {tuple(variable.shape)}.")
        variable.assign(arrays[key])
    return model
