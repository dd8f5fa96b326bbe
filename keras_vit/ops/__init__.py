"""Pure functions with no weights: box geometry, exact matching, interpolation."""

from keras_vit.ops.box_ops import box_area
from keras_vit.ops.box_ops import box_iou
from keras_vit.ops.box_ops import center_xywh_to_xyxy
from keras_vit.ops.box_ops import convert_format
from keras_vit.ops.box_ops import generalized_box_iou
from keras_vit.ops.box_ops import xyxy_to_center_xywh
from keras_vit.ops.interpolation import interpolation_matrix
from keras_vit.ops.interpolation import resize_grid
from keras_vit.ops.interpolation import resize_images
from keras_vit.ops.interpolation import resize_position_embedding
from keras_vit.ops.linear_assignment import linear_sum_assignment
from keras_vit.ops.linear_assignment import linear_sum_assignment_host
from keras_vit.ops.linear_assignment import linear_sum_assignment_ops

__all__ = [
    "box_area",
    "box_iou",
    "center_xywh_to_xyxy",
    "convert_format",
    "generalized_box_iou",
    "interpolation_matrix",
    "linear_sum_assignment",
    "linear_sum_assignment_host",
    "linear_sum_assignment_ops",
    "resize_grid",
    "resize_images",
    "resize_position_embedding",
    "xyxy_to_center_xywh",
]
