"""`from_preset` for every task and backbone, the same way for every family.

A preset is one of:

- a built-in name (`keras_vit.list_presets()`): its family fetches and
  converts the weights once into the cache (`preset_cache_dir()`), or builds
  the architecture alone with `load_weights=False`;
- a preset directory (`save_to_preset`), of any family: its `config.json`
  names the class, and loading through another class raises an error that
  names the right one;
- a checkpoint file (`.npz`, `.safetensors`, `.pth`, `.pt`, `.bin`) or
  `hf://org/name`: each family is asked whether the tensors are in one of its
  formats.

Keyword arguments go through the family's override rules: those that change
only the head, class count or resolution are applied after the weights load,
by carrying the weights over to a second model.
"""

import json
import os

import keras

from keras_vit.presets import registry
from keras_vit.presets.preset_directory import cached_preset
from keras_vit.presets.preset_directory import load_weights_file
from keras_vit.presets.preset_directory import read_preset_directory

from keras_vit.conversion.checkpoint import CHECKPOINT_EXTENSIONS  # noqa: E402 - numpy-only, no model module


def _preset_text(preset):
    if not isinstance(preset, (str, os.PathLike)):
        raise TypeError(
            "preset must be a preset name, a preset directory, a checkpoint file or "
            f"hf://org/name. Received: preset={preset!r}"
        )
    return os.fspath(preset)


def _class_of(registered):
    cls = keras.saving.get_registered_object(registered)
    if cls is None:
        raise ValueError(
            f"The preset names class {registered!r}, which this keras_vit does not have. "
            "It was written by another (newer?) keras_vit version."
        )
    return cls


def _read_hf(text):
    from keras_vit.presets.download import download
    from keras_vit.presets.download import hf_file_url

    repo = text[len("hf://"):].strip("/")
    stem = repo.replace("/", "--")
    path = download(hf_file_url(repo, "model.safetensors"), filename=f"{stem}.safetensors")
    config_path = download(hf_file_url(repo, "config.json"), filename=f"{stem}.config.json")
    with open(config_path, encoding="utf-8") as f:
        return path, json.load(f)


def _from_checkpoint(cls, text, load_weights, kwargs):
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.checkpoint import read_hf_config

    if text.startswith("hf://"):
        path, hf_config = _read_hf(text)
    else:
        path, hf_config = text, read_hf_config(text)
    arrays = read_checkpoint(path)
    own = registry.families_of_class(cls)
    for family in own:
        if family.read_checkpoint is None:
            continue
        config = family.read_checkpoint(arrays, path, hf_config, kwargs)
        if config is not None:
            loader = (lambda model: family.load_checkpoint(model, arrays)) if load_weights else None
            return family, family.task, config, loader
    others = [
        keras.saving.get_registered_object(f.task).__name__
        for f in registry.families().values()
        if f not in own and f.read_checkpoint is not None and _recognises(f, arrays, path, hf_config)
    ]
    hint = f" Its tensors are a {others[0]} checkpoint: load it with keras_vit.{others[0]}.from_preset." if others else ""
    raise ValueError(
        f"Not a {cls.__name__} checkpoint: {text} has none of the tensor names of the "
        f"{cls.__name__} formats keras_vit converts.{hint} First keys: {sorted(arrays)[:6]}"
    )


def _recognises(family, arrays, path, hf_config):
    try:
        return family.read_checkpoint(arrays, path, hf_config, {}) is not None
    except ValueError:  # its format, with a size that must be given
        return True


def resolve(cls, preset, load_weights, source, kwargs):
    """`(family, registered class name, config, weights)` of a preset.

    `weights` is None, a weights file path, or a function that loads the
    weights into a built model. Arguments that only checkpoint reading uses
    are taken out of `kwargs`.
    """
    text = _preset_text(preset)
    if text.startswith("hf://") or (os.path.isfile(text) and text.lower().endswith(CHECKPOINT_EXTENSIONS)):
        if source is not None:
            raise ValueError(f"source applies to preset names only. Received: source={source!r} with {text}")
        return _from_checkpoint(cls, text, load_weights, kwargs)
    if os.path.isdir(text):
        if source is not None:
            raise ValueError(f"source applies to preset names only. Received: source={source!r} with {text}")
        registered, config, weights = read_preset_directory(text, load_weights)
        family = registry.family_of_class(registered)
        if family is None:
            raise ValueError(f"{text} holds a {registered!r} preset, which no keras_vit family registers.")
        return family, registered, config, weights
    if os.path.isfile(text):
        raise ValueError(
            f"Unknown preset {text!r}: a file, but not a checkpoint type keras_vit reads "
            f"({', '.join(CHECKPOINT_EXTENSIONS)}) nor a preset directory."
        )
    if os.sep in text or text.startswith((".", "~")) or text.lower().endswith(CHECKPOINT_EXTENSIONS):
        raise FileNotFoundError(
            f"No such file or directory: {text!r}. Pass an existing checkpoint file or preset "
            f"directory, or a preset name from keras_vit.list_presets()."
        )
    family = registry.family_of_preset(text)
    source = family.sources[0] if source is None else source
    if source not in family.sources:
        raise ValueError(f"source must be one of {family.sources} for {text!r}. Received: source={source!r}")
    if not load_weights:
        return family, family.task, family.table_config(text), None
    registered, config, weights = read_preset_directory(cached_preset(family, text, source))
    return family, registered, config, weights


def _check_task(cls, family, registered, preset):
    held = _class_of(registered)
    if registered == family.backbone and registered != family.task:
        raise ValueError(
            f"{preset} holds a {held.__name__} alone, not a {cls.__name__}: load it with "
            f"keras_vit.{held.__name__}.from_preset({preset!r})."
        )
    if not issubclass(held, cls):
        raise ValueError(
            f"{preset} holds a {held.__name__} preset, not a {cls.__name__}: load it with "
            f"keras_vit.{held.__name__}.from_preset({preset!r})."
        )


def _same(a, b):
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _load_weights(model, weights):
    if callable(weights):
        weights(model)
    else:
        load_weights_file(model, weights)


def load_task(cls, preset, load_weights=True, source=None, **kwargs):
    """See `Task.from_preset`."""
    family, registered, config, weights = resolve(cls, preset, load_weights, source, kwargs)
    _check_task(cls, family, registered, os.fspath(preset))
    native, target = family.override(config, kwargs)
    if weights is None:
        return family.build(target)
    model = family.build(native)
    _load_weights(model, weights)
    if _same(native, target):
        return model
    result = family.build(target)
    family.transfer(model, result)
    return result


def load_backbone(cls, preset, load_weights=True, source=None, **kwargs):
    """See `Backbone.from_preset`: the backbone of a task preset, or a backbone preset."""
    family, registered, config, weights = resolve(cls, preset, load_weights, source, kwargs)
    held = _class_of(registered)
    backbone_cls = _class_of(family.backbone)
    if not issubclass(backbone_cls, cls):
        raise ValueError(
            f"{os.fspath(preset)} holds a {held.__name__} whose backbone is a {backbone_cls.__name__}, "
            f"not a {cls.__name__}: load it with keras_vit.{backbone_cls.__name__}.from_preset."
        )
    if registered == family.task:
        native, target = family.override(config, kwargs)
        # A family of backbones (ViTDet) builds the backbone itself.
        alone = family.task == family.backbone
        if weights is None:
            model = family.build(target)
            return model if alone else model.backbone
        model = family.build(native)
        _load_weights(model, weights)
        if not _same(native, target):
            result = family.build(target)
            family.transfer(model, result)
            model = result
        return model if alone else model.backbone
    unknown = sorted(set(kwargs) - set(config))
    if unknown:
        raise ValueError(f"Unknown argument(s) {unknown} for {cls.__name__}.from_preset. Arguments: {sorted(config)}")
    backbone = held.from_config({**config, **kwargs})
    if weights is not None:
        _load_weights(backbone, weights)
    return backbone


def classifier_class(preset):
    """`keras_vit.ViT`, `keras_vit.Swin` or `keras_vit.MViT`: the classifier a
    preset name, preset folder or checkpoint file is (told by its tensors'
    names; anything else goes to ViT, whose loader explains what it cannot
    read). For the commands that take any classification preset."""
    from keras_vit.models.mvit import MViT
    from keras_vit.models.swin import Swin
    from keras_vit.models.vit import ViT

    text = os.fspath(preset)
    if os.path.isdir(text):
        registered = read_preset_directory(text, load_weights=False)[0]
        for cls in (Swin, MViT):
            if registered in (f"keras_vit>{cls.__name__}", f"keras_vit>{cls.backbone_class.__name__}"):
                return cls
        return ViT
    if os.path.isfile(text):
        from keras_vit.conversion.checkpoint import read_checkpoint
        from keras_vit.conversion.mvit import detect_mvit_layout
        from keras_vit.conversion.swin import detect_swin_layout

        try:
            arrays = read_checkpoint(text)
        except ValueError:
            return ViT
        return Swin if detect_swin_layout(arrays) else MViT if detect_mvit_layout(arrays) else ViT
    try:
        task = keras.saving.get_registered_object(registry.family_of_preset(text).task)
    except ValueError:
        return ViT  # its from_preset names the closest preset
    return task if task in (ViT, Swin, MViT) else ViT
