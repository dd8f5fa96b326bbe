from keras_vit.models.detr import DETR
from keras_vit.models.dpt import DPTDepthEstimator
from keras_vit.models.dpt import DPTImageSegmenter
from keras_vit.models.mvit import MViT
from keras_vit.models.segmenter import Segmenter
from keras_vit.models.swin import Swin
from keras_vit.models.vit import ViT

__all__ = ["DETR", "DPTDepthEstimator", "DPTImageSegmenter", "MViT", "Segmenter", "Swin", "ViT"]
