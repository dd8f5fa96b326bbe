from keras_vit.models.detr import DETR
from keras_vit.models.vit import ViT

__all__ = ["DETR", "ViT"]
