"""The DPT families (depth estimation and semantic segmentation) and their
registration with the shared loader.

Preset directories of `DPTDepthEstimator` and `DPTImageSegmenter` save and
load through the shared contract. The release tables (`dpt_large`,
`dpt_hybrid`, `dpt_hybrid_kitti`, `dpt_hybrid_nyu`, `dpt_large_ade`,
`dpt_hybrid_ade`) and their download and conversion from the original `.pt`
files and transformers' ports are not registered yet (issue: DPT).
"""

import copy

import keras

from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import override_by_signature
from keras_vit.presets.registry import register_family
from keras_vit.presets.registry import transfer_by_path


def _override(registered, retargets):
    def override(config, kwargs):
        from keras_vit.models import dpt  # noqa: F401  (registers the classes)

        return override_by_signature(keras.saving.get_registered_object(registered), config, kwargs, retargets)

    return override


def _builder(registered):
    def build(config):
        from keras_vit.models import dpt  # noqa: F401  (registers the classes)

        return keras.saving.get_registered_object(registered).from_config(copy.deepcopy(config))

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
