"""The DPT families (depth estimation and semantic segmentation) and their
registration with the shared loader.

Preset directories of `DPTDepthEstimator` and `DPTImageSegmenter` save and
load through the shared contract. The release tables (`dpt_large`,
`dpt_hybrid`, `dpt_hybrid_kitti`, `dpt_hybrid_nyu`, `dpt_large_ade`,
`dpt_hybrid_ade`) and their download and conversion from the original `.pt`
files and transformers' ports are not registered yet (issue: DPT).
"""

import copy
import inspect

import keras

from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import register_family
from keras_vit.presets.registry import transfer_by_path


def _override(registered, retargets):
    def override(config, kwargs):
        cls = keras.saving.get_registered_object(registered)
        names = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs", "backbone")]
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise ValueError(
                f"Unknown argument(s) {unknown} for {cls.__name__}.from_preset. Arguments: {names}."
            )
        kwargs = dict(kwargs)
        later = {k: kwargs.pop(k) for k in retargets if k in kwargs}  # applied after the weights load
        native = {**copy.deepcopy(config), **kwargs}
        return native, {**copy.deepcopy(native), **later}

    return override


def _builder(registered):
    def build(config):
        from keras_vit.models import dpt  # noqa: F401  (registers the classes)

        cls = keras.saving.get_registered_object(registered)
        model = cls.from_config(copy.deepcopy(config))
        return model

    return build


def _no_table(name):
    raise ValueError(f"No DPT preset is registered yet (asked for {name!r}).")


def _no_fetch(name, source):
    raise ValueError(f"No DPT preset is registered yet (asked for {name!r}).")


DPT_DEPTH_FAMILY = register_family(
    PresetFamily(
        name="dpt_depth",
        task="keras_vit>DPTDepthEstimator",
        backbone="keras_vit>ViTBackbone",
        presets={},
        table_config=_no_table,
        fetch=_no_fetch,
        build=_builder("keras_vit>DPTDepthEstimator"),
        override=_override("keras_vit>DPTDepthEstimator", ()),
        transfer=transfer_by_path,
    )
)

DPT_SEGMENTATION_FAMILY = register_family(
    PresetFamily(
        name="dpt_segmentation",
        task="keras_vit>DPTImageSegmenter",
        backbone="keras_vit>ViTBackbone",
        presets={},
        table_config=_no_table,
        fetch=_no_fetch,
        build=_builder("keras_vit>DPTImageSegmenter"),
        override=_override("keras_vit>DPTImageSegmenter", ("num_classes",)),
        transfer=transfer_by_path,
    )
)
