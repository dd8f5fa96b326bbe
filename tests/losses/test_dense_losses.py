"""MiDaS's scale- and shift-invariant loss (least squares and trimmed), its
gradient-matching term and the segmentation cross-entropy, each against a
plain numpy computation written from the MiDaS paper (or torch's own
cross-entropy; the scale-invariant log loss from Eigen et al.), on odd sizes with invalid pixels."""

import keras
import numpy as np
import pytest

from keras_vit.losses import ScaleInvariantLogLoss
from keras_vit.losses import ScaleShiftInvariantLoss
from keras_vit.losses import SegmentationCrossEntropy
from keras_vit.losses import ssi_term_metrics
from keras_vit.losses import ssi_terms


def _depth_batch(seed=0, shape=(3, 13, 17)):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.2, 3.0, shape).astype("float32")
    target[rng.random(shape) < 0.3] = 0.0  # invalid pixels
    target[1, :4, :] = np.nan  # and non-finite ones
    prediction = (2.5 * np.nan_to_num(target) + 0.7 + rng.normal(0, 0.3, shape)).astype("float32")
    return target, prediction


def _gradient_numpy(residual, mask, scales):
    total = 0.0
    for scale in range(scales):
        step = 2**scale
        r, m = residual[:, ::step, ::step], mask[:, ::step, ::step]
        acc = 0.0
        for b in range(r.shape[0]):
            for i in range(r.shape[1]):
                for j in range(r.shape[2]):
                    if j + 1 < r.shape[2] and m[b, i, j] and m[b, i, j + 1]:
                        acc += abs(r[b, i, j + 1] - r[b, i, j])
                    if i + 1 < r.shape[1] and m[b, i, j] and m[b, i + 1, j]:
                        acc += abs(r[b, i + 1, j] - r[b, i, j])
        total += acc / m.sum() if m.sum() else 0.0
    return total


def _ssi_numpy(target, prediction, scales=4):
    mask = np.isfinite(target) & (np.nan_to_num(target) > 0)
    aligned = np.zeros_like(prediction, dtype="float64")
    data = 0.0
    for b in range(target.shape[0]):
        p, t = prediction[b][mask[b]].astype("float64"), target[b][mask[b]].astype("float64")
        (s, shift), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), t, rcond=None)
        aligned[b] = s * prediction[b] + shift
        data += np.sum((aligned[b][mask[b]] - t) ** 2)
    data /= 2 * mask.sum()
    residual = np.where(mask, aligned - np.nan_to_num(target), 0.0)
    return data, _gradient_numpy(residual, mask, scales)


def _trimmed_numpy(target, prediction, trim=0.2, scales=4):
    mask = np.isfinite(target) & (np.nan_to_num(target) > 0)

    def normalise(d, m):
        valid = np.sort(d[m].astype("float64"))
        median = valid[(len(valid) - 1) // 2]  # the lower median, as torch.median
        spread = np.mean(np.abs(valid - median))
        return (d - median) / spread

    data, residual = 0.0, np.zeros(target.shape)
    for b in range(target.shape[0]):
        p = normalise(prediction[b].astype("float64"), mask[b])
        t = normalise(np.nan_to_num(target[b]).astype("float64"), mask[b])
        r = np.abs(p - t)[mask[b]]
        data += np.sum(np.sort(r)[: int(np.floor((1 - trim) * mask[b].sum()))])
        residual[b] = np.where(mask[b], p - t, 0.0)
    return data / (2 * mask.sum()), _gradient_numpy(residual, mask, scales)


def test_ssi_terms_and_loss_equal_numpy():
    target, prediction = _depth_batch()
    data, gradient = _ssi_numpy(target, prediction)
    terms = ssi_terms(target, prediction)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(terms["data"]), data, rtol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(terms["gradient"]), gradient, rtol=1e-4)
    loss = ScaleShiftInvariantLoss(alpha=0.5)(target, prediction)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), data + 0.5 * gradient, rtol=1e-4)
    # Invariant to the prediction's scale and shift.
    moved = ScaleShiftInvariantLoss()(target, 3.0 * prediction - 2.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(moved), keras.ops.convert_to_numpy(loss), rtol=1e-3)


def test_trimmed_variant_equals_numpy():
    target, prediction = _depth_batch(seed=1, shape=(2, 11, 9))
    data, gradient = _trimmed_numpy(target, prediction)
    terms = ssi_terms(target, prediction, trimmed=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(terms["data"]), data, rtol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(terms["gradient"]), gradient, rtol=1e-4)
    metrics = ssi_term_metrics(trimmed=True)
    for metric, expected in zip(metrics, (data, gradient)):
        metric.update_state(target, prediction)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(metric.result()), expected, rtol=1e-4)
    assert [m.name for m in metrics] == ["ssi_data", "ssi_gradient"]


def test_loss_checks_its_arguments():
    with pytest.raises(ValueError, match="trim must be in"):
        ScaleShiftInvariantLoss(trim=1.0)
    with pytest.raises(ValueError, match="scales must be a positive int"):
        ScaleShiftInvariantLoss(scales=0)
    with pytest.raises(ValueError, match="same \\(H, W\\)"):
        ScaleShiftInvariantLoss()(np.ones((1, 4, 4)), np.ones((1, 4, 5)))
    config = ScaleShiftInvariantLoss(alpha=0.1, trimmed=True).get_config()
    assert ScaleShiftInvariantLoss.from_config(config).get_config() == config


def test_scale_invariant_log_loss_equals_numpy():
    """Eigen et al.'s loss in BTS's form over the batch's valid pixels."""
    target, _ = _depth_batch(3)
    rng = np.random.default_rng(4)
    prediction = (np.nan_to_num(target) * 1.7 + rng.uniform(0.1, 0.5, target.shape)).astype("float32")
    valid = np.isfinite(target) & (target > 0)
    g = np.log(prediction[valid].astype("float64")) - np.log(target[valid].astype("float64"))
    for focus, scale in ((0.85, 10.0), (0.0, 1.0), (1.0, 2.0)):
        expected = scale * np.sqrt(np.mean(g**2) - focus * np.mean(g) ** 2 + 1e-8)
        got = float(ScaleInvariantLogLoss(focus, scale)(target, prediction))
        assert abs(got - expected) <= 1e-4 * expected, (focus, got, expected)
    # A global factor costs (next to) nothing at variance_focus=1 (float32 cancellation
    # leaves ~0.02), and 10 * log(3) = 11 at variance_focus=0.
    scaled = np.nan_to_num(target) * 3.0 + (~valid)
    assert float(ScaleInvariantLogLoss(1.0)(target, scaled)) < 0.05
    assert abs(float(ScaleInvariantLogLoss(0.0)(target, scaled)) - 10 * np.log(3.0)) < 1e-3
    with pytest.raises(ValueError, match=r"variance_focus must be in \[0, 1\].*1.5"):
        ScaleInvariantLogLoss(variance_focus=1.5)
    loss = ScaleInvariantLogLoss(0.5, 3.0)
    assert keras.losses.deserialize(keras.losses.serialize(loss)).get_config() == loss.get_config()


def test_segmentation_cross_entropy_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, (2, 14, 10)).astype("int32")
    labels[rng.random(labels.shape) < 0.25] = 255
    logits = rng.normal(size=(2, 7, 5, 5)).astype("float32")  # half size: upsampled first
    upsampled = torch.nn.functional.interpolate(
        torch.from_numpy(logits).permute(0, 3, 1, 2), size=(14, 10), mode="bilinear", align_corners=False
    )
    expected = torch.nn.functional.cross_entropy(upsampled, torch.from_numpy(labels).long(), ignore_index=255)
    got = SegmentationCrossEntropy(ignore_index=255)(labels, logits)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected.item(), rtol=1e-5)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        SegmentationCrossEntropy(ignore_index="255")


@pytest.mark.parametrize("bad", [300, -5, 3], ids=["300", "negative", "num_classes"])
def test_out_of_range_labels_raise_in_fit_on_every_backend(bad):
    """Labels outside [0, K) that are not the ignore index raise the same
    ValueError on every backend, naming the image and the value (JAX used
    to train on them silently); 255 stays the ignore index."""
    from keras_vit import Segmenter
    from keras_vit import ViTBackbone

    backbone = ViTBackbone(image_shape=(8, 8, 3), patch_size=4, hidden_dim=6, num_layers=1, num_heads=2, mlp_dim=5)
    model = Segmenter(backbone, num_classes=3, decoder="linear")
    model.compile(optimizer="adamw")
    x = np.zeros((2, 8, 8, 3), "float32")
    y = np.zeros((2, 8, 8), "int32")
    y[:, :2] = 255  # ignored: fine
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    y[1, 3, 3] = bad
    with pytest.raises(ValueError, match=rf"class indices in \[0, 3\) or the ignore index 255\. Image 1 of the batch holds \[{bad}\]"):
        model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)
