from keras_vit.backbones.mvit_backbone import MViTBackbone
from keras_vit.backbones.resnet_backbone import ResNetBackbone
from keras_vit.backbones.swin_backbone import SwinBackbone
from keras_vit.backbones.vit_backbone import ViTBackbone
from keras_vit.backbones.vitdet_backbone import ViTDetBackbone

__all__ = ["MViTBackbone", "ResNetBackbone", "SwinBackbone", "ViTBackbone", "ViTDetBackbone"]
