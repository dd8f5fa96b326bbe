from keras_vit.backbones.vit_backbone import ViTBackbone

__all__ = ["ViTBackbone"]
