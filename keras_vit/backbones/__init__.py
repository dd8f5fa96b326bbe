from keras_vit.backbones.resnet_backbone import ResNetBackbone
from keras_vit.backbones.vit_backbone import ViTBackbone

__all__ = ["ResNetBackbone", "ViTBackbone"]
