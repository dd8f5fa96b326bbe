from keras_vit.metrics.coco import coco_evaluate

__all__ = ["coco_evaluate"]
