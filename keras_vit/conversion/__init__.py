"""Checkpoint converters, one module per source. Importing a model never imports these."""

from keras_vit.conversion.npz import load_npz
from keras_vit.conversion.npz import load_npz_weights
from keras_vit.conversion.npz import vit_config_from_npz
from keras_vit.conversion.timm import load_timm_state_dict
from keras_vit.conversion.timm import vit_config_from_timm
from keras_vit.conversion.transformers import load_transformers_state_dict
from keras_vit.conversion.transformers import vit_config_from_transformers

__all__ = [
    "load_npz",
    "load_npz_weights",
    "vit_config_from_npz",
    "load_timm_state_dict",
    "load_transformers_state_dict",
    "vit_config_from_timm",
    "vit_config_from_transformers",
]
