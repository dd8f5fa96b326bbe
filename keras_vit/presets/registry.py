"""The preset registry: every model family registers its presets here.

A family is a preset table (data) plus the few functions that differ between
families: how a table entry becomes a model config, how its weights are
fetched and converted, how checkpoint files of its formats are recognised and
read, which `from_preset` keyword arguments it accepts and how weights carry
over to a model with a new head or resolution. The shared loader
(`keras_vit/presets/loader.py`) does everything else the same way for every
family.

The registry knows model classes only by their Keras registered names
(`"keras_vit>ViT"`), so nothing here imports a model module.
"""

import dataclasses
import difflib
from typing import Callable
from typing import Optional

import keras


@dataclasses.dataclass(frozen=True)
class PresetFamily:
    """One model family's presets and the functions the shared loader calls.

    Attributes:
        name: short name used by `list_presets(family=...)`, e.g. `"vit"`.
        task: registered name of the task class (`"keras_vit>ViT"`).
        backbone: registered name of the backbone class.
        presets: `{preset name: entry}`; every entry has a `"description"`.
        table_config: `name -> config`: the task's config (its `get_config()`
            layout, backbone and preprocessor serialized) for a preset name,
            with no weights.
        fetch: `(name, source) -> model`: downloads and converts a preset's
            weights; the loader caches the result as a preset directory.
        build: `config -> model`: a built task model from a config.
        override: `(config, kwargs) -> (native, target)`: applies
            `from_preset` keyword arguments. `native` is the config the
            stored weights fit (sizes that the weights fix), `target` the one
            the caller asked for. Unknown arguments raise a `ValueError`.
        transfer: `(source model, target model) -> None`: carries weights to
            a model with a new head, class count or resolution.
        read_checkpoint: `(arrays, path, hf_config, options) -> config or
            None`: the task config of a checkpoint's tensors, or None when
            they are not in one of this family's formats.
        load_checkpoint: `(model, arrays) -> None`: places the tensors.
        sources: the weight sources of a preset name, the default first.
        checkpoint_options: `from_preset` arguments only checkpoint reading
            uses (passed to `read_checkpoint` as `options`).
    """

    name: str
    task: str
    backbone: str
    presets: dict
    table_config: Callable
    fetch: Callable
    build: Callable
    override: Callable
    transfer: Callable
    read_checkpoint: Optional[Callable] = None
    load_checkpoint: Optional[Callable] = None
    sources: tuple = ("default",)
    checkpoint_options: tuple = ()


_FAMILIES = {}


def serialized(registered, config):
    """`{"registered_name", "class_name", "module", "config"}` as Keras serializes an
    object, from its registered name (`"keras_vit>ViTBackbone"`) and arguments."""
    return {"registered_name": registered, "class_name": registered.split(">")[1], "module": None, "config": dict(config)}


def image_preprocessor_config(size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """A serialized `ViTImagePreprocessor` (pixels / 255, then mean and std)."""
    from keras_vit.utils.validation import check_pair

    return serialized(
        "keras_vit>ViTImagePreprocessor", {"image_size": check_pair("image_size", size), "mean": mean, "std": std}
    )


def sized_override(registered, retargets, import_models):
    """A family `override` for dense tasks on a `ViTBackbone`: any constructor
    argument of the task (`override_by_signature`), and `image_size` (an int
    or `(H, W)` divisible by the backbone's stride); `retargets` and
    `image_size` apply after the weights load. `import_models()` imports the
    module that registers the task class."""

    def override(config, kwargs):
        import keras

        from keras_vit.utils.validation import check_pair

        import_models()
        kwargs = dict(kwargs)
        size = kwargs.pop("image_size", None)
        native, target = override_by_signature(
            keras.saving.get_registered_object(registered), config, kwargs, retargets
        )
        if size is not None:
            size = check_pair("image_size", size)
            backbone = target["backbone"]["config"]
            backbone["image_shape"] = (size[0], size[1], backbone["image_shape"][-1])
            if target.get("preprocessor"):
                target["preprocessor"]["config"]["image_size"] = size
        return native, target

    return override


def override_by_signature(cls, config, kwargs, retargets=()):
    """A family `override` for tasks whose `from_preset` takes any constructor
    argument of `cls`: `retargets` (e.g. `num_classes`) apply after the
    weights load, every other argument to the model they load into. A
    retarget given as None is not given. Unknown arguments raise."""
    import copy
    import inspect

    names = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs", "backbone")]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for {cls.__name__}.from_preset. {cls.__name__} arguments: {names}."
        )
    kwargs = dict(kwargs)
    later = {k: v for k in retargets if (v := kwargs.pop(k, None)) is not None}
    native = {**copy.deepcopy(config), **kwargs}
    return native, {**copy.deepcopy(native), **later}


def relative_path(model, variable):
    """A variable's path below its model, the same in every build of the
    model: subclassed models' paths start with the model's (numbered) name,
    functional models' with the layer's."""
    prefix = model.name + "/"
    return variable.path[len(prefix):] if variable.path.startswith(prefix) else variable.path


def transfer_by_path(source, target):
    """A family `transfer`: copies every variable whose path (below the model
    name) and shape match; returns how many were copied."""
    key = relative_path
    by_path = {key(source, v): v for v in source.weights}
    if len(by_path) != len(source.weights):
        raise ValueError(f"{source.name} has variables with the same path; weights cannot be matched by path.")
    copied = 0
    for variable in target.weights:
        match = by_path.get(key(target, variable))
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            # A copy: on JAX the two models must not share a buffer, which
            # a step that donates its state would delete under the other.
            variable.assign(keras.ops.copy(match.value))
            copied += 1
    return copied


def transfer_resizing_positions(source, target):
    """A family `transfer` for tasks on a `ViTBackbone` (`model.backbone`):
    `transfer_by_path`, and the position embeddings resized when the grids
    differ (bilinear, align_corners=False, no antialiasing: what DPT's
    `_resize_pos_embed` in the original code and in transformers, and the
    official Segmenter's `resize_pos_embed` do)."""
    copied = transfer_by_path(source, target)
    layer = source.backbone.get_layer("position_embedding")
    target_layer = target.backbone.get_layer("position_embedding")
    if layer.grid_size != target_layer.grid_size:
        target_layer.set_weights([layer.resized_embedding(target_layer.grid_size, "bilinear", False, False)])
        copied += 1
    return copied


def register_family(family):
    """Adds a family; its preset names must not clash with another family's."""
    if not isinstance(family, PresetFamily):
        raise TypeError(f"family must be a PresetFamily. Received: {family!r}")
    for other in _FAMILIES.values():
        if other.name == family.name:
            continue
        clash = sorted(set(other.presets) & set(family.presets))
        if clash:
            raise ValueError(f"Preset names {clash} of family {family.name!r} are taken by family {other.name!r}.")
    _FAMILIES[family.name] = family
    return family


def families():
    """The registered families, by name."""
    return dict(_FAMILIES)


def matching_families(family):
    """The family names that `family` selects: itself, or every family it is
    the prefix of (`"dpt"` -> `dpt_depth`, `dpt_segmentation`); a ValueError
    listing the families when none matches."""
    if family in _FAMILIES:
        return [family]
    matches = sorted(name for name in _FAMILIES if isinstance(family, str) and family and name.startswith(family))
    if not matches:
        raise ValueError(
            f"family must be one of {sorted(_FAMILIES)} (or a prefix of some, e.g. 'dpt'), or None. "
            f"Received: family={family!r}"
        )
    return matches


def list_presets(family=None):
    """Names of the built-in presets, sorted.

    Args:
        family: None for every family, a family name (`"vit"`, `"detr"`,
            ...) or a prefix of family names (`"dpt"`: both DPT families).
    """
    if family is None:
        return sorted(name for f in _FAMILIES.values() for name in f.presets)
    return sorted(name for f in matching_families(family) for name in _FAMILIES[f].presets)


def family_of_preset(name):
    """The family that owns a preset name, or a ValueError naming the closest name."""
    for family in _FAMILIES.values():
        if name in family.presets:
            return family
    raise unknown_preset_error(name)


def family_of_class(registered_name):
    """The family whose task or backbone is `registered_name`, or None."""
    for family in _FAMILIES.values():
        if registered_name in (family.task, family.backbone):
            return family
    return None


def families_of_class(cls):
    """The families whose task or backbone class is `cls` or a subclass of it."""
    found = []
    for family in _FAMILIES.values():
        for registered in (family.task, family.backbone):
            member = keras.saving.get_registered_object(registered)
            if member is not None and issubclass(member, cls):
                found.append(family)
                break
    return found


def presets_of_class(cls):
    """`{name: description}` of the presets that `cls.from_preset` accepts."""
    return {
        name: entry["description"]
        for family in families_of_class(cls)
        for name, entry in sorted(family.presets.items())
    }


def unknown_preset_error(name):
    names = list_presets()
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.3)
    hint = f" The closest match is {close[0]!r}." if close else ""
    return ValueError(
        f"Unknown preset {name!r}: not a built-in preset name, a preset directory "
        f"or a checkpoint file.{hint} Available presets: {names}"
    )


class ClassPresets:
    """`SomeModel.presets`: `{name: description}` of the built-in presets it loads."""

    def __get__(self, instance, owner):
        return presets_of_class(owner)
