"""Presets: the registry, the preset directory format and the families' tables.

Importing this package registers the built-in families (`vit`, `detr`,
`dpt_depth`, `dpt_segmentation`, `mvit`, `segmenter`, `swin`, `vitdet`); it
imports no model module (tests/presets/test_registry.py checks it).
"""

from keras_vit.presets import detr_presets
from keras_vit.presets import dpt_presets
from keras_vit.presets import mvit_presets
from keras_vit.presets import segmenter_presets
from keras_vit.presets import swin_presets
from keras_vit.presets import vit_presets
from keras_vit.presets import vitdet_presets
from keras_vit.presets.detr_presets import DETR_PRESETS
from keras_vit.presets.preset_directory import preset_cache_dir
from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import list_presets
from keras_vit.presets.registry import register_family
from keras_vit.presets.vit_presets import VIT_PRESETS

__all__ = [
    "DETR_PRESETS",
    "PresetFamily",
    "VIT_PRESETS",
    "detr_presets",
    "dpt_presets",
    "mvit_presets",
    "list_presets",
    "preset_cache_dir",
    "register_family",
    "segmenter_presets",
    "swin_presets",
    "vit_presets",
    "vitdet_presets",
]
