from keras_vit.metrics.coco import coco_evaluate
from keras_vit.metrics.dense import DepthMetrics
from keras_vit.metrics.dense import SegmentationAccuracy
from keras_vit.metrics.dense import SegmentationMeanIoU
from keras_vit.metrics.dense import depth_metrics_per_image

__all__ = ["DepthMetrics", "SegmentationAccuracy", "SegmentationMeanIoU", "coco_evaluate", "depth_metrics_per_image"]
