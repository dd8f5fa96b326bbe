"""DETR's set-prediction loss as pure `keras.ops` functions.

Shapes: B images, Q queries, K = num_classes + 1 logits (the last is "no
object"), T padded targets per image. Boxes are `rel_center_xywh` (centre,
width and height as fractions of the unpadded image). Everything here runs in
float32: callers cast mixed-precision outputs first.

Targets are padded dense tensors with a mask: `labels (B, T)` int,
`boxes (B, T, 4)`, `mask (B, T)` True for real objects. Padded rows may hold
anything; they are replaced by a harmless box before any arithmetic so that no
NaN reaches a gradient.
"""

from keras import ops

from keras_vit.ops.box_ops import center_xywh_to_xyxy
from keras_vit.ops.box_ops import generalized_box_iou

_PLACEHOLDER_BOX = (0.5, 0.5, 1.0, 1.0)


def sanitize_targets(labels, boxes, mask):
    """Replaces padded rows with label 0 and a full-image box; returns float mask too."""
    mask = ops.cast(mask, "bool")
    labels = ops.where(mask, ops.cast(labels, "int32"), 0)
    placeholder = ops.convert_to_tensor(_PLACEHOLDER_BOX, "float32")
    boxes = ops.where(mask[..., None], ops.cast(boxes, "float32"), placeholder)
    return labels, boxes, mask


def hungarian_matching_cost(logits, boxes, target_labels, target_boxes, class_cost=1.0, box_cost=5.0, giou_cost=2.0):
    """DETR's matching cost `(B, Q, T)`.

    `box_cost * L1(box, target) - class_cost * p(target class) - giou_cost * GIoU(box, target)`.

    Args:
        logits: `(B, Q, K)`.
        boxes: `(B, Q, 4)` predicted boxes.
        target_labels: `(B, T)` int in [0, K - 1) (sanitized).
        target_boxes: `(B, T, 4)` (sanitized).
    """
    probabilities = ops.softmax(ops.cast(logits, "float32"), axis=-1)  # (B, Q, K)
    one_hot = ops.one_hot(target_labels, logits.shape[-1], dtype="float32")  # (B, T, K)
    cost_class = -ops.einsum("bqk,btk->bqt", probabilities, one_hot)
    boxes = ops.cast(boxes, "float32")
    cost_box = ops.sum(ops.abs(boxes[:, :, None, :] - target_boxes[:, None, :, :]), axis=-1)  # (B, Q, T)
    cost_giou = -generalized_box_iou(center_xywh_to_xyxy(boxes), center_xywh_to_xyxy(target_boxes))
    return box_cost * cost_box + class_cost * cost_class + giou_cost * cost_giou


def set_loss_terms(
    logits, boxes, target_labels, target_boxes, target_mask, query_index, num_boxes, no_object_weight=0.1,
    weight_total=None,
):
    """The unweighted loss terms of one decoder layer, given its matching.

    Args:
        logits: `(B, Q, K)`.
        boxes: `(B, Q, 4)`.
        target_labels, target_boxes, target_mask: sanitized targets.
        query_index: `(B, T)` int, the query matched to each target (-1 on padding).
        num_boxes: float scalar, the number of real targets in the batch (>= 1).
        no_object_weight: the class weight of "no object" in the cross-entropy.
        weight_total: a function of this batch's summed class weights giving
            the cross-entropy's denominator (default: that sum). Under data
            parallelism, the replicas' mean of their sums, so that averaging
            the replicas' losses gives the global batch's weighted mean.

    Returns:
        dict of float32 scalars: `loss_ce` (weighted mean over all queries, as
        torch's weighted `cross_entropy`), `loss_bbox` (L1 summed over matched
        pairs / num_boxes), `loss_giou` (1 - GIoU summed / num_boxes) and
        `cardinality_error` (|predicted objects - targets|, averaged over
        images; logged only).
    """
    logits = ops.cast(logits, "float32")
    boxes = ops.cast(boxes, "float32")
    num_queries, num_logits = logits.shape[1], logits.shape[2]
    no_object = num_logits - 1
    valid = ops.cast(target_mask, "float32")  # (B, T)
    # (B, T, Q): one row per real target with a 1 at its query.
    assignment = ops.one_hot(ops.maximum(query_index, 0), num_queries, dtype="float32") * valid[..., None]
    matched = ops.sum(assignment, axis=1)  # (B, Q), 1 for matched queries
    matched_label = ops.einsum("btq,bt->bq", assignment, ops.cast(target_labels, "float32"))
    target_classes = ops.where(matched > 0, ops.cast(ops.round(matched_label), "int32"), no_object)  # (B, Q)

    log_probs = ops.log_softmax(logits, axis=-1)
    nll = -ops.sum(log_probs * ops.one_hot(target_classes, num_logits, dtype="float32"), axis=-1)  # (B, Q)
    weight = ops.where(target_classes == no_object, no_object_weight, 1.0)
    total_weight = ops.sum(weight)
    loss_ce = ops.sum(weight * nll) / (weight_total(total_weight) if weight_total is not None else total_weight)

    matched_boxes = ops.einsum("btq,bqd->btd", assignment, boxes)  # (B, T, 4)
    # Unmatched (padded) rows get the placeholder box as well, so GIoU stays finite.
    matched_boxes = ops.where(valid[..., None] > 0, matched_boxes, target_boxes)
    loss_bbox = ops.sum(ops.sum(ops.abs(matched_boxes - target_boxes), axis=-1) * valid) / num_boxes
    # (B, T, 1, 4) against (B, T, 1, 4) -> (B, T, 1, 1): the GIoU of each pair.
    giou = generalized_box_iou(
        center_xywh_to_xyxy(matched_boxes)[:, :, None, :], center_xywh_to_xyxy(target_boxes)[:, :, None, :]
    )[..., 0, 0]
    loss_giou = ops.sum((1.0 - giou) * valid) / num_boxes

    predicted_objects = ops.sum(ops.cast(ops.argmax(logits, axis=-1) != no_object, "float32"), axis=1)
    cardinality_error = ops.mean(ops.abs(predicted_objects - ops.sum(valid, axis=1)))
    return {
        "loss_ce": loss_ce,
        "loss_bbox": loss_bbox,
        "loss_giou": loss_giou,
        "cardinality_error": cardinality_error,
    }


def check_targets(labels, boxes, mask=None, num_classes=None, finite_predictions=None, where="the batch"):
    """Raises a `ValueError` naming the image, slot and value of the first bad
    target (numpy, on the host; also called from the training step through
    `keras_vit.backend.host_callback.host_check`).

    Args:
        labels: `(B, T)` int class ids in `[0, num_classes)`, -1 for padding
            (or any value where `mask` is False).
        boxes: `(B, T, 4)`; must be finite on real targets.
        mask: optional `(B, T)` bool, True on real targets.
        num_classes: the model's number of object classes.
        finite_predictions: optional `(B,)` bool, whether each image's
            predicted logits and boxes (every decoder layer) are finite.
        where: words for the position of image 0 (`"the batch"`, `"y"`).
    """
    import numpy as np

    labels = np.asarray(labels)
    boxes = np.asarray(boxes)
    if labels.ndim != 2 or boxes.shape != labels.shape + (4,):
        raise ValueError(
            "DETR targets must be labels (B, T) and boxes (B, T, 4) padded to T per image. "
            f"Received: labels.shape={labels.shape}, boxes.shape={boxes.shape}"
        )
    real = labels >= 0 if mask is None else np.asarray(mask, bool)
    if mask is None:
        bad = np.argwhere(labels < -1)
        if len(bad):
            b, t = bad[0]
            raise ValueError(
                f"DETR target label {labels[b, t]} at image {b} of {where}, slot {t}: labels are class ids in "
                f"[0, {num_classes}) and -1 marks padding (or pass a 'mask'). Fix the label."
            )
    out_of_range = real & ((labels < 0) | (labels >= num_classes))
    if out_of_range.any():
        b, t = np.argwhere(out_of_range)[0]
        value = labels[b, t]
        hint = (
            f" {num_classes} is the 'no object' class: class ids run from 0 to {num_classes - 1} "
            f"(build the model with num_classes={value + 1} if this class is real)"
            if value == num_classes
            else f" Build the model with num_classes > {value} or fix the label."
        )
        raise ValueError(
            f"DETR target label {value} at image {b} of {where}, slot {t} is outside [0, {num_classes}).{hint}"
        )
    finite = np.isfinite(boxes.astype("float64")).all(axis=-1)
    bad = np.argwhere(real & ~finite)
    if len(bad):
        b, t = bad[0]
        raise ValueError(
            f"DETR target box {boxes[b, t].tolist()} at image {b} of {where}, slot {t} is not finite. "
            "Remove the object or fix its box."
        )
    if finite_predictions is not None:
        bad = np.flatnonzero(~np.asarray(finite_predictions, bool))
        if len(bad):
            raise ValueError(
                f"DETR's predicted logits or boxes are NaN or inf for image(s) {bad.tolist()} of {where}, so the "
                "matching cost is not finite. An input image holds NaN/inf, or training diverged (lower the "
                "learning rate, clip gradients, or use float32 instead of mixed precision)."
            )
