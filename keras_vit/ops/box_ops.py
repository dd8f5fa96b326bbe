"""Box geometry as small pure functions on `keras.ops` (DETR's `box_ops`).

Formats follow the Keras bounding-box names: `"xyxy"` is (x_min, y_min, x_max,
y_max) and `"center_xywh"` is (center_x, center_y, width, height); DETR predicts
`center_xywh` normalised to [0, 1]. Every function broadcasts over leading
batch axes: boxes `(..., N, 4)` against `(..., M, 4)` give `(..., N, M)`.
"""

from keras import ops


def center_xywh_to_xyxy(boxes):
    """`(..., 4)` (cx, cy, w, h) -> (x_min, y_min, x_max, y_max)."""
    boxes = ops.convert_to_tensor(boxes)
    cx, cy, w, h = ops.unstack(boxes, 4, axis=-1)
    return ops.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_center_xywh(boxes):
    """`(..., 4)` (x_min, y_min, x_max, y_max) -> (cx, cy, w, h)."""
    boxes = ops.convert_to_tensor(boxes)
    x0, y0, x1, y1 = ops.unstack(boxes, 4, axis=-1)
    return ops.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def box_area(boxes):
    """`(..., 4)` xyxy -> `(...)` areas (negative extents count as they are)."""
    boxes = ops.convert_to_tensor(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1, boxes2):
    """Pairwise IoU and union of xyxy boxes.

    Args:
        boxes1: `(..., N, 4)`.
        boxes2: `(..., M, 4)`.

    Returns:
        `(iou, union)`, each `(..., N, M)`.
    """
    boxes1, boxes2 = ops.convert_to_tensor(boxes1), ops.convert_to_tensor(boxes2)
    area1 = box_area(boxes1)  # (..., N)
    area2 = box_area(boxes2)  # (..., M)
    top_left = ops.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])  # (..., N, M, 2)
    bottom_right = ops.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])  # (..., N, M, 2)
    extent = ops.maximum(bottom_right - top_left, 0.0)  # (..., N, M, 2)
    intersection = extent[..., 0] * extent[..., 1]  # (..., N, M)
    union = area1[..., :, None] + area2[..., None, :] - intersection  # (..., N, M)
    return intersection / union, union


def generalized_box_iou(boxes1, boxes2):
    """Pairwise generalized IoU (Rezatofighi et al., 2019) of xyxy boxes.

    `giou = iou - (hull - union) / hull`, in [-1, 1]. Degenerate boxes (zero
    width or height) are allowed as long as the pair's union and hull are not
    both zero; inverted boxes (max < min) make the result meaningless, as in
    DETR, and are the caller's to avoid.

    Args:
        boxes1: `(..., N, 4)`.
        boxes2: `(..., M, 4)`.

    Returns:
        `(..., N, M)`.
    """
    boxes1, boxes2 = ops.convert_to_tensor(boxes1), ops.convert_to_tensor(boxes2)
    iou, union = box_iou(boxes1, boxes2)
    top_left = ops.minimum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])  # (..., N, M, 2)
    bottom_right = ops.maximum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])  # (..., N, M, 2)
    extent = ops.maximum(bottom_right - top_left, 0.0)  # (..., N, M, 2)
    hull = extent[..., 0] * extent[..., 1]  # (..., N, M)
    return iou - (hull - union) / hull
