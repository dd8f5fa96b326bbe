"""coco_evaluate equals pycocotools' COCOeval (bbox) on the same predictions."""

import contextlib
import io

import numpy as np
import pytest

from keras_vit.metrics import coco_evaluate
from keras_vit.metrics.coco import STAT_NAMES

pycocotools_coco = pytest.importorskip("pycocotools.coco")
pycocotools_eval = pytest.importorskip("pycocotools.cocoeval")

TOLERANCE = 1e-4


def _random_set(seed, images=12, classes=4, crowd=True):
    """Ground truth of mixed sizes (small to large, some crowd) and noisy,
    partly wrong detections (jittered truths, false positives, duplicates)."""
    rng = np.random.default_rng(seed)
    truth, detections = [], []
    for _ in range(images):
        n = rng.integers(0, 7)
        xy = rng.uniform(0, 400, (n, 2))
        wh = np.exp(rng.uniform(np.log(8), np.log(200), (n, 2)))
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, classes, n)
        iscrowd = (rng.uniform(size=n) < 0.1) if crowd else np.zeros(n, bool)
        areas = wh[:, 0] * wh[:, 1] * rng.uniform(0.5, 1.0, n)  # "segmentation" areas
        truth.append((boxes, labels, iscrowd, areas))
        jitter = boxes + rng.normal(0, 3, boxes.shape)
        extra = rng.integers(0, 8)
        exy = rng.uniform(0, 400, (extra, 2))
        fake = np.concatenate([exy, exy + rng.uniform(5, 150, (extra, 2))], 1)
        d_boxes = np.concatenate([jitter, fake, jitter[: n // 2] + 3])
        d_labels = np.concatenate([np.where(rng.uniform(size=n) < 0.8, labels, rng.integers(0, classes, n)),
                                   rng.integers(0, classes, extra), labels[: n // 2]])
        d_scores = rng.uniform(size=len(d_boxes)).round(2)  # rounded: ties exercise the stable sort
        detections.append((d_boxes, d_labels, d_scores))
    return truth, detections


def _pycocotools(truth, detections, classes=4):
    images, annotations, results = [], [], []
    for i, (boxes, labels, iscrowd, areas) in enumerate(truth):
        images.append({"id": i + 1, "width": 640, "height": 640})
        for box, label, crowd, area in zip(boxes, labels, iscrowd, areas):
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                "area": float(area), "iscrowd": int(crowd),
            })
    for i, (boxes, labels, scores) in enumerate(detections):
        for box, label, score in zip(boxes, labels, scores):
            results.append({
                "image_id": i + 1, "category_id": int(label) + 1, "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
            })
    with contextlib.redirect_stdout(io.StringIO()):
        gt = pycocotools_coco.COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c + 1} for c in range(classes)]}
        gt.createIndex()
        dt = gt.loadRes(results) if results else pycocotools_coco.COCO()
        evaluator = pycocotools_eval.COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(STAT_NAMES, evaluator.stats))


def _ours(truth, detections, **kwargs):
    return coco_evaluate(
        [t[0] for t in truth], [t[1] for t in truth],
        [d[0] for d in detections], [d[1] for d in detections], [d[2] for d in detections],
        truth_crowd=[t[2] for t in truth], truth_areas=[t[3] for t in truth], **kwargs,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocotools(seed):
    truth, detections = _random_set(seed)
    expected = _pycocotools(truth, detections)
    ours = _ours(truth, detections)
    for name in STAT_NAMES:
        assert abs(ours[name] - expected[name]) <= TOLERANCE, (name, ours[name], expected[name])
    assert 0.05 < ours["AP"] < 0.95  # a non-trivial case


def test_perfect_detections_and_more_than_100():
    truth, _ = _random_set(3, crowd=False)
    perfect = [(t[0], t[1], np.linspace(1, 0.5, len(t[0]))) for t in truth]
    assert _ours(truth, perfect)["AP50"] == pytest.approx(1.0)
    # 150 detections on one image: only the best 100 count, as in COCOeval.
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (150, 2))
    boxes = np.concatenate([xy, xy + 40], 1)
    truth = [(boxes, np.zeros(150, int), np.zeros(150, bool), np.full(150, 1600.0))]
    detections = [(boxes + rng.normal(0, 2, boxes.shape), np.zeros(150, int), rng.uniform(size=150))]
    expected, ours = _pycocotools(truth, detections, classes=1), _ours(truth, detections)
    for name in STAT_NAMES:
        assert abs(ours[name] - expected[name]) <= TOLERANCE, name


def test_padded_arrays_and_formats():
    truth, detections = _random_set(4, crowd=False)
    reference = _ours(truth, detections)

    def pad(items, width, fill):
        out = np.full((len(items), width) + np.shape(items[0])[1:], fill, dtype="float64")
        for i, item in enumerate(items):
            out[i, : len(item)] = item
        return out

    t_boxes, t_labels = pad([t[0] for t in truth], 8, 0), pad([t[1] for t in truth], 8, -1)
    d_boxes, d_labels = pad([d[0] for d in detections], 20, 0), pad([d[1] for d in detections], 20, -1)
    d_scores = pad([d[2] for d in detections], 20, 0)
    areas = pad([t[3] for t in truth], 8, 0)
    padded = coco_evaluate(t_boxes, t_labels, d_boxes, d_labels, d_scores, truth_areas=areas)
    assert padded == pytest.approx(reference)
    yxyx = coco_evaluate(t_boxes[..., [1, 0, 3, 2]], t_labels, d_boxes[..., [1, 0, 3, 2]], d_labels, d_scores,
                         truth_areas=areas, box_format="yxyx")
    assert yxyx == pytest.approx(reference)
    with pytest.raises(ValueError, match="box_format"):
        coco_evaluate(t_boxes, t_labels, d_boxes, d_labels, d_scores, box_format="cxcywh")
    with pytest.raises(ValueError, match="detection_scores must have one entry per image"):
        coco_evaluate(t_boxes, t_labels, d_boxes, d_labels, d_scores[:2])
