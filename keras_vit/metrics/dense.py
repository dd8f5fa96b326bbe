"""Dense-prediction metrics: mean IoU and pixel accuracy with an ignore
index (Keras's own `MeanIoU` and `SparseCategoricalAccuracy`, given logits of
any size), and the standard monocular-depth metrics (per image, then averaged).
"""

import keras
from keras import ops

from keras_vit.losses.dense_losses import depth_maps
from keras_vit.losses.dense_losses import segmentation_inputs


@keras.saving.register_keras_serializable(package="keras_vit")
class SegmentationMeanIoU(keras.metrics.MeanIoU):
    """`keras.metrics.MeanIoU` on `(B, h, w, K)` logits and `(B, H, W)` labels.

    The logits are resized to the labels' size (bilinear,
    align_corners=False) and arg-maxed; pixels labelled `ignore_index` are
    left out; classes absent from both labels and predictions are left out of
    the mean (Keras's MeanIoU averages over classes with a non-empty union).

    Args:
        num_classes: int.
        ignore_index: int (ADE20K: 255) or None.
    """

    def __init__(self, num_classes, ignore_index=255, name="mean_iou", dtype=None):
        super().__init__(num_classes=num_classes, ignore_class=ignore_index, sparse_y_pred=False, name=name, dtype=dtype)
        self.ignore_index = ignore_index

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, logits = segmentation_inputs(y_true, y_pred)
        return super().update_state(labels, logits, sample_weight)

    def get_config(self):
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_vit")
class SegmentationAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Pixel accuracy (`keras.metrics.SparseCategoricalAccuracy`) over the
    pixels not labelled `ignore_index`, on logits resized to the labels."""

    def __init__(self, ignore_index=255, name="pixel_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_index = ignore_index

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, logits = segmentation_inputs(y_true, y_pred)
        valid = ops.ones_like(labels, "float32")
        if self.ignore_index is not None:
            valid = ops.cast(labels != self.ignore_index, "float32")
        if sample_weight is not None:
            valid = valid * ops.cast(sample_weight, "float32")
        return super().update_state(ops.where(valid > 0, labels, 0), logits, valid)

    def get_config(self):
        return {"ignore_index": self.ignore_index, "name": self.name, "dtype": self.dtype}


DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")


def depth_metrics_per_image(y_true, y_pred, min_depth=1e-3, max_depth=10.0, median_scaling=False):
    """`{name: (B,)}` of the standard depth metrics of each image, over its
    valid pixels (`min_depth < y_true < max_depth`, finite). Predictions are
    clipped to `[min_depth, max_depth]` (as the Eigen-split evaluations do);
    with `median_scaling`, first multiplied by `median(y_true) / median(y_pred)`
    over the valid pixels (for relative-depth models). Images without a valid
    pixel give NaN."""
    from keras_vit.losses.dense_losses import _masked_median

    gt, pred = depth_maps(y_true, y_pred)
    valid = ops.logical_and(ops.isfinite(gt), ops.logical_and(gt > min_depth, gt < max_depth))
    mask = ops.cast(valid, "float32")
    gt = ops.where(valid, gt, 1.0)
    if median_scaling:
        ratio = _masked_median(gt, mask) / ops.maximum(_masked_median(pred, mask), 1e-12)
        pred = pred * ratio[:, None, None]
    pred = ops.clip(ops.where(ops.isfinite(pred), pred, max_depth), min_depth, max_depth)
    count = ops.sum(mask, axis=(1, 2))
    safe = ops.maximum(count, 1.0)
    nan = ops.full_like(count, float("nan"))

    def mean(values):
        return ops.where(count > 0, ops.sum(mask * values, axis=(1, 2)) / safe, nan)

    ratio = ops.maximum(gt / pred, pred / gt)
    out = {
        "abs_rel": mean(ops.abs(gt - pred) / gt),
        "sq_rel": mean((gt - pred) ** 2 / gt),
        "rmse": ops.sqrt(mean((gt - pred) ** 2)),
        "rmse_log": ops.sqrt(mean((ops.log(gt) - ops.log(pred)) ** 2)),
        "log10": mean(ops.abs(ops.log(gt) - ops.log(pred)) / ops.log(10.0)),
    }
    for power in (1, 2, 3):
        out[f"delta{power}"] = mean(ops.cast(ratio < 1.25**power, "float32"))
    return out


@keras.saving.register_keras_serializable(package="keras_vit")
class DepthMetrics(keras.metrics.Metric):
    """AbsRel, SqRel, RMSE, RMSElog, log10 and delta < 1.25, 1.25^2, 1.25^3:
    each computed per image over its valid pixels, then averaged over images
    (images with no valid pixel are skipped). `result()` is a dict; every
    value is NaN when no image had a valid pixel (never a perfect 0).

    Args:
        min_depth, max_depth: the valid target range and the prediction caps
            (NYUv2: 1e-3 and 10 m; KITTI: 1e-3 and 80 m).
        median_scaling: bool, align each prediction to its target's median
            first (relative-depth models).
    """

    def __init__(self, min_depth=1e-3, max_depth=10.0, median_scaling=False, name="depth", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(
                f"Need 0 <= min_depth < max_depth. Received: min_depth={min_depth!r}, max_depth={max_depth!r}"
            )
        self.median_scaling = bool(median_scaling)
        self.sums = {k: self.add_variable((), initializer="zeros", name=k) for k in DEPTH_METRICS}
        self.images = self.add_variable((), initializer="zeros", name="images")

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = depth_metrics_per_image(y_true, y_pred, self.min_depth, self.max_depth, self.median_scaling)
        seen = ops.isfinite(values["abs_rel"])
        for key, variable in self.sums.items():
            variable.assign(variable + ops.sum(ops.where(seen, values[key], 0.0)))
        self.images.assign(self.images + ops.sum(ops.cast(seen, "float32")))

    def result(self):
        # No image with a valid pixel: nothing was measured, and 0 would read
        # as a perfect score (AbsRel 0). NaN says so; `evaluated_images`
        # tells how many images counted.
        count = ops.maximum(self.images, 1.0)
        empty = self.images < 0.5
        return {key: ops.where(empty, float("nan"), variable / count) for key, variable in self.sums.items()}

    @property
    def evaluated_images(self):
        """How many images had at least one valid pixel (in [min_depth, max_depth])."""
        return int(round(float(ops.convert_to_numpy(self.images))))

    def get_config(self):
        return {
            "min_depth": self.min_depth, "max_depth": self.max_depth, "median_scaling": self.median_scaling,
            "name": self.name, "dtype": self.dtype,
        }
