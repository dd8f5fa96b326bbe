"""The public names of `keras_vit` (the package imports them from here)."""

from keras_vit import callbacks
from keras_vit import distribution
from keras_vit import layers
from keras_vit import ops
from keras_vit import tuning
from keras_vit.backbones.mvit_backbone import MViTBackbone
from keras_vit.backbones.resnet_backbone import ResNetBackbone
from keras_vit.backbones.swin_backbone import SwinBackbone
from keras_vit.backbones.vit_backbone import ViTBackbone
from keras_vit.backbones.vitdet_backbone import ViTDetBackbone
from keras_vit.layers.image_preprocessor import ViTImagePreprocessor
from keras_vit.models.detr import DETR
from keras_vit.models.dpt import DPTDepthEstimator
from keras_vit.models.dpt import DPTImageSegmenter
from keras_vit.models.mvit import MViT
from keras_vit.models.segmenter import Segmenter
from keras_vit.models.swin import Swin
from keras_vit.models.vit import ViT
from keras_vit.presets import list_presets
from keras_vit.presets import preset_cache_dir

__all__ = [
    "DETR",
    "DPTDepthEstimator",
    "DPTImageSegmenter",
    "MViT",
    "MViTBackbone",
    "ResNetBackbone",
    "Segmenter",
    "Swin",
    "SwinBackbone",
    "ViT",
    "ViTBackbone",
    "ViTDetBackbone",
    "ViTImagePreprocessor",
    "callbacks",
    "distribution",
    "layers",
    "list_presets",
    "ops",
    "preset_cache_dir",
    "tuning",
]
