from keras_vit.presets.loading import list_presets
from keras_vit.presets.loading import preset_cache_dir
from keras_vit.presets.vit_presets import VIT_PRESETS

__all__ = ["VIT_PRESETS", "list_presets", "preset_cache_dir"]
