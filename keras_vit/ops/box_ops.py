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


BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw")


def check_box_format(name, value):
    """Returns `(base format, is_relative)`; raises naming `name` for unknown formats."""
    base = value[4:] if isinstance(value, str) and value.startswith("rel_") else value
    if base not in BOX_FORMATS:
        choices = ", ".join(BOX_FORMATS + tuple(f"rel_{f}" for f in BOX_FORMATS))
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}")
    return base, value.startswith("rel_")


def _to_xyxy(boxes, base):
    a, b, c, d = ops.unstack(boxes, 4, axis=-1)
    if base == "xyxy":
        return a, b, c, d
    if base == "yxyx":
        return b, a, d, c
    if base == "xywh":
        return a, b, a + c, b + d
    if base == "center_xywh":
        return a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    return b - 0.5 * d, a - 0.5 * c, b + 0.5 * d, a + 0.5 * c  # center_yxhw


def _from_xyxy(x0, y0, x1, y1, base):
    if base == "xyxy":
        parts = (x0, y0, x1, y1)
    elif base == "yxyx":
        parts = (y0, x0, y1, x1)
    elif base == "xywh":
        parts = (x0, y0, x1 - x0, y1 - y0)
    elif base == "center_xywh":
        parts = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
    else:  # center_yxhw
        parts = ((y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0)
    return ops.stack(parts, axis=-1)


def convert_format(boxes, source, target, image_size=None):
    """Converts boxes between the Keras bounding-box formats.

    Formats are `"xyxy"`, `"yxyx"`, `"xywh"`, `"center_xywh"` and
    `"center_yxhw"` in pixels, and the same names with a `"rel_"` prefix for
    coordinates relative to the image size (DETR predicts `"rel_center_xywh"`).

    Args:
        boxes: `(..., 4)`.
        source, target: format names.
        image_size: `(height, width)` pixels, as a pair or a tensor `(..., 2)`
            that broadcasts against the boxes' leading axes (one size per image
            of a batch: `(B, 1, 2)` for boxes `(B, N, 4)`). Needed only when
            exactly one of the two formats is relative.

    Returns:
        `(..., 4)` boxes in `target`.
    """
    source_base, source_relative = check_box_format("source", source)
    target_base, target_relative = check_box_format("target", target)
    boxes = ops.convert_to_tensor(boxes)
    if source == target:
        return boxes
    x0, y0, x1, y1 = _to_xyxy(boxes, source_base)
    if source_relative != target_relative:
        if image_size is None:
            raise ValueError(
                f"image_size is needed to convert from {source!r} to {target!r} "
                "(one is relative, the other in pixels). Received: image_size=None"
            )
        size = ops.cast(ops.convert_to_tensor(image_size), boxes.dtype)
        height, width = size[..., 0], size[..., 1]
        if source_relative:
            x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        else:
            x0, x1, y0, y1 = x0 / width, x1 / width, y0 / height, y1 / height
    return _from_xyxy(x0, y0, x1, y1, target_base)
