"""COCO box evaluation (mAP@[.5:.95], AP50, AP75, AP/AR by object size), in numpy.

The same algorithm as pycocotools' `COCOeval` for `iouType="bbox"`, which the
tests use as the reference: per image and class, detections are sorted by
score (at most 100), greedily matched to the best-IoU unmatched ground truth
at each IoU threshold 0.50:0.05:0.95 (crowd boxes may match many times and
are ignored, as are boxes outside the size range), and precision is
interpolated at 101 recall points and averaged over classes with ground
truth.
"""

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
AREA_RANGES = {"all": (0, 1e10), "small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}
MAX_DETECTIONS = (1, 10, 100)
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _xywh(boxes, box_format):
    boxes = np.asarray(boxes, "float64").reshape(-1, 4)
    if box_format == "xywh":
        return boxes
    if box_format == "xyxy":
        return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    if box_format == "yxyx":
        return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], axis=1)
    raise ValueError(f'box_format must be "xyxy", "yxyx" or "xywh" (pixels). Received: box_format={box_format!r}')


def _iou(detections, truths, crowd):
    """(D, 4) x (G, 4) xywh -> (D, G); crowd truths divide by the detection's area only."""
    if len(detections) == 0 or len(truths) == 0:
        return np.zeros((len(detections), len(truths)))
    d0, g0 = detections[:, None, :2], truths[None, :, :2]
    d1, g1 = d0 + detections[:, None, 2:], g0 + truths[None, :, 2:]
    extent = np.clip(np.minimum(d1, g1) - np.maximum(d0, g0), 0, None)
    inter = extent[..., 0] * extent[..., 1]
    area_d = (detections[:, 2] * detections[:, 3])[:, None]
    area_g = (truths[:, 2] * truths[:, 3])[None, :]
    union = np.where(crowd[None, :], area_d, area_d + area_g - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match(ious, truth_ignore, truth_crowd, detection_count):
    """Greedy matching per IoU threshold: (T, D) matched flags and ignore flags."""
    thresholds = len(IOU_THRESHOLDS)
    matched = np.zeros((thresholds, detection_count), bool)
    ignored = np.zeros((thresholds, detection_count), bool)
    taken = np.zeros((thresholds, len(truth_ignore)), bool)
    for t, threshold in enumerate(IOU_THRESHOLDS):
        for d in range(detection_count):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for g in range(len(truth_ignore)):
                if taken[t, g] and not truth_crowd[g]:
                    continue
                # Truths are sorted real-first: stop at the ignored ones once a real match exists.
                if best > -1 and not truth_ignore[best] and truth_ignore[g]:
                    break
                if ious[d, g] < best_iou:
                    continue
                best, best_iou = g, ious[d, g]
            if best == -1:
                continue
            ignored[t, d] = truth_ignore[best]
            matched[t, d] = True
            taken[t, best] = True
    return matched, ignored


def _as_list(values, count, name):
    if values is None:
        return [None] * count
    if len(values) != count:
        raise ValueError(f"{name} must have one entry per image ({count}). Received: {len(values)} entries")
    return list(values)


def coco_evaluate(
    truth_boxes,
    truth_labels,
    detection_boxes,
    detection_labels,
    detection_scores,
    truth_crowd=None,
    truth_areas=None,
    box_format="xyxy",
):
    """COCO box metrics of a set of images.

    Each argument is a list with one entry per image (or a padded array
    `(N, K, ...)`); labels < 0 mark padding, as in the Keras convention.

    Args:
        truth_boxes: per image `(G, 4)` in `box_format` (pixels).
        truth_labels: per image `(G,)` int class ids.
        detection_boxes, detection_labels, detection_scores: per image
            `(D, 4)`, `(D,)`, `(D,)`.
        truth_crowd: optional per image `(G,)` bool, COCO's `iscrowd`.
        truth_areas: optional per image `(G,)` areas for the size ranges
            (COCO uses the segmentation area); the box area by default.
        box_format: `"xyxy"`, `"yxyx"` or `"xywh"`.

    Returns:
        dict with the 12 COCOeval statistics `AP, AP50, AP75, APs, APm, APl,
        AR1, AR10, AR100, ARs, ARm, ARl` (-1 where undefined, as COCOeval).
    """
    count = len(truth_boxes)
    lists = [
        _as_list(v, count, n) for v, n in (
            (truth_labels, "truth_labels"), (detection_boxes, "detection_boxes"),
            (detection_labels, "detection_labels"), (detection_scores, "detection_scores"),
            (truth_crowd, "truth_crowd"), (truth_areas, "truth_areas"),
        )
    ]
    images = []
    for i, (labels, d_boxes, d_labels, d_scores, crowd, areas) in enumerate(zip(*lists)):
        labels = np.asarray(labels).reshape(-1)
        keep = labels >= 0
        boxes = _xywh(truth_boxes[i], box_format)[keep]
        crowd = np.zeros(len(boxes), bool) if crowd is None else np.asarray(crowd, bool).reshape(-1)[keep]
        areas = boxes[:, 2] * boxes[:, 3] if areas is None else np.asarray(areas, "float64").reshape(-1)[keep]
        d_labels = np.asarray(d_labels).reshape(-1)
        d_keep = d_labels >= 0
        images.append(
            {
                "boxes": boxes, "labels": labels[keep], "crowd": crowd, "areas": areas,
                "d_boxes": _xywh(d_boxes, box_format)[d_keep], "d_labels": d_labels[d_keep],
                "d_scores": np.asarray(d_scores, "float64").reshape(-1)[d_keep],
            }
        )
    classes = np.unique(np.concatenate([im["labels"] for im in images])) if images else np.zeros(0)
    max_det = MAX_DETECTIONS[-1]
    shape = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(classes), len(AREA_RANGES), len(MAX_DETECTIONS))
    precision = -np.ones(shape)
    recall = -np.ones(shape[:1] + shape[2:])
    for k, label in enumerate(classes):
        per_area = {name: [] for name in AREA_RANGES}
        for im in images:
            g = im["labels"] == label
            d = np.flatnonzero(im["d_labels"] == label)
            if not g.any() and len(d) == 0:
                continue
            d = d[np.argsort(-im["d_scores"][d], kind="mergesort")][:max_det]
            d_boxes, scores = im["d_boxes"][d], im["d_scores"][d]
            boxes, crowd, areas = im["boxes"][g], im["crowd"][g], im["areas"][g]
            ious = _iou(d_boxes, boxes, crowd)
            d_areas = d_boxes[:, 2] * d_boxes[:, 3]
            for name, (low, high) in AREA_RANGES.items():
                ignore = crowd | (areas < low) | (areas > high)
                order = np.argsort(ignore, kind="mergesort")
                matched, ignored = _match(ious[:, order], ignore[order], crowd[order], len(d))
                outside = (d_areas < low) | (d_areas > high)
                ignored |= ~matched & outside[None, :]
                per_area[name].append((scores, matched, ignored, int(np.count_nonzero(~ignore))))
        for a, name in enumerate(AREA_RANGES):
            entries = per_area[name]
            for m, limit in enumerate(MAX_DETECTIONS):
                if not entries:
                    continue
                positives = sum(e[3] for e in entries)
                if positives == 0:
                    continue
                scores = np.concatenate([e[0][:limit] for e in entries])
                order = np.argsort(-scores, kind="mergesort")
                matched = np.concatenate([e[1][:, :limit] for e in entries], axis=1)[:, order]
                ignored = np.concatenate([e[2][:, :limit] for e in entries], axis=1)[:, order]
                tp = np.cumsum(matched & ~ignored, axis=1, dtype="float64")
                fp = np.cumsum(~matched & ~ignored, axis=1, dtype="float64")
                for t in range(len(IOU_THRESHOLDS)):
                    found = len(tp[t])
                    rc = tp[t] / positives
                    pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
                    recall[t, k, a, m] = rc[-1] if found else 0
                    pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope
                    points = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
                    q = np.zeros(len(RECALL_THRESHOLDS))
                    valid = points < found
                    q[valid] = pr[points[valid]]
                    precision[t, :, k, a, m] = q
    return _summarize(precision, recall)


def _summarize(precision, recall):
    def mean(values):
        values = values[values > -1]
        return float(np.mean(values)) if values.size else -1.0

    areas = list(AREA_RANGES)
    last = len(MAX_DETECTIONS) - 1
    stats = [
        mean(precision[:, :, :, 0, last]),
        mean(precision[0, :, :, 0, last]),
        mean(precision[5, :, :, 0, last]),
    ]
    stats += [mean(precision[:, :, :, areas.index(a), last]) for a in ("small", "medium", "large")]
    stats += [mean(recall[:, :, 0, m]) for m in range(len(MAX_DETECTIONS))]
    stats += [mean(recall[:, :, areas.index(a), last]) for a in ("small", "medium", "large")]
    return dict(zip(STAT_NAMES, stats))
