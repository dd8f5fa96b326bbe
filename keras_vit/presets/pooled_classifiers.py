"""What the families of the hierarchical classifiers (Swin, MViTv2) share:
`from_preset` arguments, weight transfer and checkpoint reading. Each
family module keeps its table, its sources and what differs (input sizes)."""

import importlib
import inspect

from keras_vit.presets.registry import image_preprocessor_config
from keras_vit.presets.registry import override_by_signature
from keras_vit.presets.registry import relative_path
from keras_vit.presets.registry import serialized

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
# Backbone arguments that do not change the weights: they apply to the model
# the weights are carried to, not to the one they load into.
_REGULARISATION = ("drop_path_rate", "dropout_rate", "attention_dropout_rate")


def override_backbone_and_head(task_cls, backbone_cls, config, kwargs):
    """`(native, target)` for `num_classes` (a new head after the weights
    load), `dtype`, the classifier's arguments and any backbone argument (the
    regularisation rates to the target only). `image_size` is the family's."""
    kwargs = dict(kwargs)
    names = [p for p in inspect.signature(backbone_cls.__init__).parameters if p not in ("self", "kwargs", "dtype")]
    backbone_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    native, target = override_by_signature(task_cls, config, kwargs, retargets=("num_classes",))
    for key, value in backbone_kwargs.items():
        target["backbone"]["config"][key] = value
        if key not in _REGULARISATION:
            native["backbone"]["config"][key] = value
    if kwargs.get("dtype") is not None:
        for cfg in (native, target):
            cfg["backbone"]["config"]["dtype"] = kwargs["dtype"]
    return native, target


def transfer_weights(source, target, why=""):
    """Copies every variable by path; the head only when its shape matches (a
    new class count starts at zero, as the ViT head does). A backbone
    variable that cannot carry over raises, with `why` it may differ."""
    import numpy as np

    by_path = {relative_path(source, v): v for v in source.weights}
    missed = []
    for variable in target.weights:
        path = relative_path(target, variable)
        match = by_path.get(path)
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(match.value * 1)
        elif path.startswith("head/"):
            variable.assign(np.zeros(tuple(variable.shape), variable.dtype))
        else:
            missed.append(f"{path} {tuple(variable.shape)} vs {None if match is None else tuple(match.shape)}")
    if missed:
        raise ValueError(f"Cannot carry these weights to the new model: {missed[:4]}. {why}")
    return len(target.weights)


def lazy(module, function):
    """`module.function`, imported on first call (a family module imports no converter at import time)."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    return call


def checkpoint_reader(name, backbone_registered, detect, read_config):
    """A family `read_checkpoint`: None for files `detect` does not claim,
    else the task config `read_config(arrays, hf_config=...)` gives, with the
    ImageNet preprocessor at its size; a missing tensor is a ValueError."""

    def read(arrays, path, hf_config, kwargs):
        if detect(arrays) is None:
            return None
        try:
            config = read_config(arrays, hf_config=hf_config)
        except KeyError as error:
            raise ValueError(
                f"This {name} checkpoint is incomplete: {error.args[0] if error.args else error} Download it again "
                "(a partial download?), or load it with the library that wrote it."
            ) from None
        size = config["backbone"]["image_shape"][:2]
        return {
            "backbone": serialized(backbone_registered, config["backbone"]),
            "num_classes": config["num_classes"],
            "preprocessor": image_preprocessor_config(size, IMAGENET["mean"], IMAGENET["std"]),
        }

    return read
