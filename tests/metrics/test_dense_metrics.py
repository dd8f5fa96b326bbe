"""Mean IoU and pixel accuracy (Keras's MeanIoU and accuracy underneath)
against torchmetrics on random label maps with ignored pixels and absent
classes; the depth metrics against a plain numpy computation."""

import keras
import numpy as np
import pytest

from keras_vit.metrics import DepthMetrics
from keras_vit.metrics import SegmentationAccuracy
from keras_vit.metrics import SegmentationMeanIoU


def _labels_and_logits(seed, num_classes=7):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes - 2, (3, 9, 11)).astype("int32")  # the last 2 classes absent
    labels[rng.random(labels.shape) < 0.2] = 255
    logits = rng.normal(size=(3, 9, 11, num_classes)).astype("float32")
    logits[..., -1] -= 100.0  # never predicted either: absent from the mean
    return labels, logits


def test_mean_iou_and_accuracy_equal_torchmetrics():
    torch = pytest.importorskip("torch")
    classification = pytest.importorskip("torchmetrics.classification")
    iou = SegmentationMeanIoU(num_classes=7, ignore_index=255)
    accuracy = SegmentationAccuracy(ignore_index=255)
    reference_iou = classification.MulticlassJaccardIndex(num_classes=7, ignore_index=255, average=None)
    reference_accuracy = classification.MulticlassAccuracy(num_classes=7, ignore_index=255, average="micro")
    unions = np.zeros(7)
    for seed in range(3):
        labels, logits = _labels_and_logits(seed)
        iou.update_state(labels, logits)
        accuracy.update_state(labels, logits)
        predicted = torch.from_numpy(logits.argmax(-1))
        reference_iou.update(predicted, torch.from_numpy(labels).long())
        reference_accuracy.update(predicted, torch.from_numpy(labels).long())
        valid = labels != 255
        for c in range(7):
            unions[c] += np.sum(((labels == c) | (logits.argmax(-1) == c)) & valid)
    per_class = reference_iou.compute().numpy()
    present = unions > 0
    assert not present.all()  # the test has an absent class
    expected = per_class[present].mean()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(iou.result()), expected, rtol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(accuracy.result()), reference_accuracy.compute().item(), rtol=1e-5
    )


def _depth_numpy(gt, pred, lo, hi, median_scaling):
    out = {k: [] for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")}
    for g, p in zip(gt, pred):
        m = np.isfinite(g) & (g > lo) & (g < hi)
        if not m.any():
            continue
        g, p = g[m].astype("float64"), p[m].astype("float64")
        if median_scaling:
            p = p * np.sort(g)[(len(g) - 1) // 2] / np.sort(p)[(len(p) - 1) // 2]
        p = np.clip(p, lo, hi)
        ratio = np.maximum(g / p, p / g)
        out["abs_rel"].append(np.mean(np.abs(g - p) / g))
        out["sq_rel"].append(np.mean((g - p) ** 2 / g))
        out["rmse"].append(np.sqrt(np.mean((g - p) ** 2)))
        out["rmse_log"].append(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)))
        out["log10"].append(np.mean(np.abs(np.log10(g) - np.log10(p))))
        for k in (1, 2, 3):
            out[f"delta{k}"].append(np.mean(ratio < 1.25**k))
    return {k: np.mean(v) for k, v in out.items()}


@pytest.mark.parametrize("median_scaling", [False, True])
def test_depth_metrics_equal_numpy(median_scaling):
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.5, 12.0, (4, 10, 7)).astype("float32")  # some beyond the 10 m cap
    gt[rng.random(gt.shape) < 0.2] = 0.0
    gt[3] = 0.0  # an image with no valid pixel: skipped
    pred = (gt * rng.uniform(0.7, 1.4, gt.shape) + 0.05).astype("float32")
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0, median_scaling=median_scaling)
    metric.update_state(gt[:2], pred[:2])
    metric.update_state(gt[2:], pred[2:])
    got = {k: float(keras.ops.convert_to_numpy(v)) for k, v in metric.result().items()}
    expected = _depth_numpy(gt, pred, 1e-3, 10.0, median_scaling)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, err_msg=key)
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        DepthMetrics(min_depth=5, max_depth=1)


def test_depth_metrics_with_no_valid_pixel_are_nan_not_a_perfect_score():
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0)
    metric.update_state(np.full((2, 4, 5), 50.0, "float32"), np.ones((2, 4, 5), "float32"))  # every pixel beyond 10 m
    assert metric.evaluated_images == 0
    assert all(np.isnan(float(keras.ops.convert_to_numpy(v))) for v in metric.result().values())
