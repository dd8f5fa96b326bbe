"""Dense-prediction losses: MiDaS's scale- and shift-invariant depth loss (with
its gradient-matching term and the trimmed variant), the scale-invariant log
loss for metric depth, and segmentation cross-entropy with an ignore index. Pure `keras.ops`, float32.

Written by hand because no Keras library has them; the formulas follow
Ranftl et al., "Towards Robust Monocular Depth Estimation" (MiDaS, TPAMI),
and the reduction of its public training loss ("batch-based": sums over the
batch divided by the batch's valid-pixel count).

Depth losses work in disparity (inverse depth) space, which is what DPT
predicts: `y_true` is `(B, H, W)` disparity with 0 (or any value <= 0, or
non-finite) marking invalid pixels; `y_pred` is `(B, H, W)` at the same size.
"""

import keras
import numpy as np
from keras import ops


def depth_maps(y_true, y_pred):
    """`(B, H, W)` float32 targets and predictions (a trailing channel of 1
    dropped), checked to have the same size."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    if len(y_pred.shape) == 4 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    if len(y_true.shape) == 4 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if tuple(y_true.shape[1:]) != tuple(y_pred.shape[1:]):
        raise ValueError(
            "The depth targets and predictions must have the same (H, W). Received: "
            f"y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}. Resize the targets "
            "(nearest) to the model's output size."
        )
    return y_true, y_pred


def _depth_inputs(y_true, y_pred):
    y_true, y_pred = depth_maps(y_true, y_pred)
    mask = ops.logical_and(ops.isfinite(y_true), y_true > 0)
    y_true = ops.where(mask, y_true, 0.0)
    return y_true, y_pred, ops.cast(mask, "float32")


def scale_and_shift(prediction, target, mask):
    """Per image, `(s, t)` minimising `sum(mask * (s * prediction + t - target)^2)`
    (the 2x2 normal equations); `(0, 0)` where the system is singular."""
    a00 = ops.sum(mask * prediction * prediction, axis=(1, 2))
    a01 = ops.sum(mask * prediction, axis=(1, 2))
    a11 = ops.sum(mask, axis=(1, 2))
    b0 = ops.sum(mask * prediction * target, axis=(1, 2))
    b1 = ops.sum(mask * target, axis=(1, 2))
    det = a00 * a11 - a01 * a01
    valid = ops.abs(det) > 0
    safe = ops.where(valid, det, 1.0)
    scale = ops.where(valid, (a11 * b0 - a01 * b1) / safe, 0.0)
    shift = ops.where(valid, (-a01 * b0 + a00 * b1) / safe, 0.0)
    return scale, shift


def _batch_based(image_losses, divisor):
    total = ops.sum(divisor)
    return ops.where(total > 0, ops.sum(image_losses) / ops.maximum(total, 1e-12), 0.0)


def gradient_matching(prediction, target, mask, scales=4):
    """MiDaS's multi-scale gradient-matching term on the residual
    `R = prediction - target`: at scales 1, 2, 4, ... (every 2^k-th pixel),
    `sum(|dx R| + |dy R|)` over pixel pairs that are both valid, divided by
    the valid-pixel count of that scale, summed over the scales."""
    total = 0.0
    for scale in range(scales):
        step = 2**scale
        p, t, m = prediction[:, ::step, ::step], target[:, ::step, ::step], mask[:, ::step, ::step]
        diff = m * (p - t)
        grad_x = ops.abs(diff[:, :, 1:] - diff[:, :, :-1]) * (m[:, :, 1:] * m[:, :, :-1])
        grad_y = ops.abs(diff[:, 1:, :] - diff[:, :-1, :]) * (m[:, 1:, :] * m[:, :-1, :])
        image = ops.sum(grad_x, axis=(1, 2)) + ops.sum(grad_y, axis=(1, 2))
        total = total + _batch_based(image, ops.sum(m, axis=(1, 2)))
    return total


def _masked_median(values, mask):
    """Per image, the lower median of the valid values (torch.median's choice)."""
    flat = ops.reshape(values, (ops.shape(values)[0], -1))
    valid = ops.reshape(mask, (ops.shape(mask)[0], -1)) > 0
    ordered = ops.sort(ops.where(valid, flat, float("inf")), axis=-1)
    count = ops.sum(ops.cast(valid, "int32"), axis=-1)
    index = ops.maximum(count - 1, 0) // 2
    median = ops.take_along_axis(ordered, index[:, None], axis=-1)[:, 0]
    return ops.where(count > 0, median, 0.0)


def _normalise(values, mask):
    """`(d - median(d)) / mean|d - median(d)|` over the valid pixels of each image."""
    median = _masked_median(values, mask)[:, None, None]
    count = ops.maximum(ops.sum(mask, axis=(1, 2)), 1.0)[:, None, None]
    spread = ops.sum(mask * ops.abs(values - median), axis=(1, 2))[:, None, None] / count
    return (values - median) / ops.maximum(spread, 1e-6)


def ssi_terms(y_true, y_pred, alpha=0.5, scales=4, trimmed=False, trim=0.2, terms=("data", "gradient")):
    """The terms of the scale- and shift-invariant loss, `{"data", "gradient"}`.

    - least squares (default): the prediction is aligned to the target per
      image by `scale_and_shift`; `data = sum(mask * r^2) / (2 * M)` over the
      batch (M: valid pixels).
    - `trimmed=True`: both maps are normalised per image (median, mean
      absolute deviation); `data` is the sum of the smallest `1 - trim` share
      of `|r|` per image over `2 * M`.

    `gradient` is `gradient_matching` on the aligned maps (0 when `alpha` is 0).
    `terms` names the terms to compute (a metric reporting one skips the other).
    """
    target, prediction, mask = _depth_inputs(y_true, y_pred)
    if trimmed:
        aligned, target = _normalise(prediction, mask), _normalise(target, mask)
    else:
        scale, shift = scale_and_shift(prediction, target, mask)
        aligned = scale[:, None, None] * prediction + shift[:, None, None]
    out = {}
    if "data" in terms and trimmed:
        residual = ops.reshape(ops.abs(aligned - target), (ops.shape(mask)[0], -1))
        valid = ops.reshape(mask, (ops.shape(mask)[0], -1))
        ordered = ops.sort(ops.where(valid > 0, residual, float("inf")), axis=-1)
        keep = ops.cast(ops.floor((1.0 - trim) * ops.sum(valid, axis=-1)), "int32")
        rank = ops.arange(ops.shape(ordered)[-1], dtype="int32")[None, :]
        kept = ops.where(rank < keep[:, None], ordered, 0.0)
        out["data"] = _batch_based(ops.sum(kept, axis=-1), 2.0 * ops.sum(valid, axis=-1))
    elif "data" in terms:
        residual = aligned - target
        out["data"] = _batch_based(ops.sum(mask * residual * residual, axis=(1, 2)), 2.0 * ops.sum(mask, axis=(1, 2)))
    if "gradient" in terms:
        out["gradient"] = gradient_matching(aligned, target, mask, scales) if alpha > 0 else ops.zeros((), "float32")
    return out


def _check_nonnegative(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number. Received: {name}={value!r}") from None
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0. Received: {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="keras_vit")
class ScaleShiftInvariantLoss(keras.losses.Loss):
    """MiDaS's scale- and shift-invariant loss in disparity space:
    `data + alpha * gradient` (see `ssi_terms`).

    Args:
        alpha: float, weight of the gradient-matching term (MiDaS: 0.5).
        scales: int, scales of the gradient-matching term (MiDaS: 4).
        trimmed: bool, the trimmed, median-aligned variant (MiDaS's
            `ssitrim`) instead of least-squares alignment.
        trim: float in [0, 1), the share of largest residuals dropped per image.
    """

    def __init__(self, alpha=0.5, scales=4, trimmed=False, trim=0.2, name="ssi_loss", **kwargs):
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.alpha = _check_nonnegative("alpha", alpha)
        if isinstance(scales, bool) or not isinstance(scales, int) or scales < 1:
            raise ValueError(f"scales must be a positive int. Received: scales={scales!r}")
        self.scales = scales
        self.trimmed = bool(trimmed)
        self.trim = _check_nonnegative("trim", trim)
        if self.trim >= 1:
            raise ValueError(f"trim must be in [0, 1). Received: trim={trim!r}")

    def call(self, y_true, y_pred):
        terms = ssi_terms(y_true, y_pred, self.alpha, self.scales, self.trimmed, self.trim)
        loss = terms["data"] + self.alpha * terms["gradient"]
        # The batch-based value, once per image so that the mean reduction returns it.
        return ops.ones((ops.shape(y_pred)[0],), "float32") * loss

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config.update(alpha=self.alpha, scales=self.scales, trimmed=self.trimmed, trim=self.trim)
        return config


def ssi_term_metrics(alpha=0.5, scales=4, trimmed=False, trim=0.2):
    """`[data, gradient]` metrics reporting each term of `ScaleShiftInvariantLoss`."""
    metrics = []
    for term in ("data", "gradient"):
        def fn(y_true, y_pred, term=term):
            value = ssi_terms(y_true, y_pred, alpha, scales, trimmed, trim, terms=(term,))[term]
            return ops.ones((ops.shape(y_pred)[0],), "float32") * value

        metrics.append(keras.metrics.MeanMetricWrapper(fn, name=f"ssi_{term}"))
    return metrics


@keras.saving.register_keras_serializable(package="keras_vit")
class ScaleInvariantLogLoss(keras.losses.Loss):
    """The scale-invariant log loss for metric depth (Eigen et al., 2014), in
    the form metric-depth models are fine-tuned with (BTS, AdaBins):
    `scale * sqrt(mean(g^2) - variance_focus * mean(g)^2)`, with
    `g = log(y_pred) - log(y_true)` over the batch's valid pixels.

    `y_true`: `(B, H, W)` depth, 0 (or any value <= 0, or non-finite) where
    invalid; `y_pred`: `(B, H, W)` positive depth at the same size (a
    `DPTDepthEstimator` with `depth_scale`/`depth_shift` outputs it).
    `variance_focus=1` is fully scale-invariant, 0 the plain log-RMSE.
    `1e-8` is added under the square root so that its gradient stays finite.

    Args:
        variance_focus: float in [0, 1] (BTS: 0.85; Eigen et al.: 0.5).
        scale: float, the output's factor (BTS: 10).
    """

    def __init__(self, variance_focus=0.85, scale=10.0, name="silog_loss", **kwargs):
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.variance_focus = _check_nonnegative("variance_focus", variance_focus)
        if self.variance_focus > 1:
            raise ValueError(f"variance_focus must be in [0, 1]. Received: variance_focus={variance_focus!r}")
        self.scale = _check_nonnegative("scale", scale)

    def call(self, y_true, y_pred):
        target, prediction, mask = _depth_inputs(y_true, y_pred)
        diff = mask * (ops.log(ops.maximum(prediction, 1e-6)) - ops.log(ops.where(mask > 0, target, 1.0)))
        count = ops.maximum(ops.sum(mask), 1.0)
        mean = ops.sum(diff) / count
        variance = ops.maximum(ops.sum(diff * diff) / count - self.variance_focus * mean * mean, 0.0)
        loss = self.scale * ops.sqrt(variance + 1e-8)
        return ops.ones((ops.shape(prediction)[0],), "float32") * loss

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config.update(variance_focus=self.variance_focus, scale=self.scale)
        return config


def segmentation_inputs(y_true, y_pred):
    """`(B, H, W)` int32 labels (a trailing channel of 1 dropped) and float32
    logits at the labels' size."""
    labels = ops.cast(y_true, "int32")
    if len(labels.shape) == 4 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    return labels, _resize_logits(ops.cast(y_pred, "float32"), labels.shape[1:3])


def _resize_logits(logits, size):
    from keras_vit.ops.interpolation import resize_images

    if tuple(logits.shape[1:3]) == tuple(size):
        return logits
    # transformers' DPT and Segmenter upsample logits to the labels' size
    # (bilinear, align_corners=False) before the cross-entropy.
    return resize_images(logits, size, "bilinear", align_corners=False)


def check_label_range(labels, num_classes, ignore_index):
    """Raises a ValueError (from eager or compiled code, on every backend:
    `keras_vit.backend.host_callback.host_check`) when a label is neither a
    class index in `[0, num_classes)` nor `ignore_index`; returns an int32 0
    to add to the loss. Without it, out-of-range labels train silently on
    JAX (its gathers clamp), and TensorFlow and torch fail with their own
    errors."""
    from keras_vit.backend.host_callback import host_check

    def check(values):
        bad = (values < 0) | (values >= num_classes)
        if ignore_index is not None:
            bad &= values != ignore_index
        if bad.any():
            image = int(np.argmax(bad.reshape(len(values), -1).any(axis=1)))
            found = sorted({int(v) for v in np.unique(values[image][bad[image]])})
            ignore = "" if ignore_index is None else f" or the ignore index {ignore_index}"
            raise ValueError(
                f"Segmentation labels must be class indices in [0, {num_classes}){ignore}. Image {image} of the "
                f"batch holds {found[:8]}. Map the labels to the model's classes (or give those pixels the ignore index)."
            )

    return host_check(check, [labels])


@keras.saving.register_keras_serializable(package="keras_vit")
class SegmentationCrossEntropy(keras.losses.Loss):
    """Pixel-wise cross-entropy with an ignore index, averaged over the
    batch's non-ignored pixels (torch's `CrossEntropyLoss(ignore_index=...)`).

    `y_true`: `(B, H, W)` int labels, `ignore_index` for unlabelled pixels.
    `y_pred`: `(B, h, w, K)` logits; resized to `(H, W)` (bilinear,
    align_corners=False) when smaller, as transformers does.

    Args:
        ignore_index: int label to ignore (ADE20K: 255), or None.
        from_logits: bool.
    """

    def __init__(self, ignore_index=255, from_logits=True, name="segmentation_cross_entropy", **kwargs):
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(f"ignore_index must be an int or None. Received: ignore_index={ignore_index!r}")
        self.ignore_index = ignore_index
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        labels, logits = segmentation_inputs(y_true, y_pred)
        checked = check_label_range(labels, logits.shape[-1], self.ignore_index)
        valid = ops.ones_like(labels, "bool") if self.ignore_index is None else labels != self.ignore_index
        # In range for the cross-entropy op itself, so that TensorFlow's
        # kernel does not fail first (with its own error) while the check runs.
        safe = ops.where(valid & (labels >= 0) & (labels < logits.shape[-1]), labels, 0)
        per_pixel = keras.losses.sparse_categorical_crossentropy(safe, logits, from_logits=self.from_logits)
        valid = ops.cast(valid, "float32")
        # Mean over valid pixels of the batch, returned per image so that the
        # mean reduction gives it: sum(loss * valid) / sum(valid) * B / B.
        total = ops.sum(per_pixel * valid) / ops.maximum(ops.sum(valid), 1.0)
        # + 0 from the label check: using its result keeps graph compilers from dropping it.
        return ops.ones((ops.shape(labels)[0],), "float32") * total + ops.cast(checked, "float32")

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config.update(ignore_index=self.ignore_index, from_logits=self.from_logits)
        return config
