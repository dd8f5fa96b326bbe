from keras_vit.models.vit import ViT

__all__ = ["ViT"]
