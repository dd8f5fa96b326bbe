"""DETR training fails loudly on bad targets and non-finite costs, on both matching paths.

Targets given as arrays are checked whole before any step; targets from a
dataset are checked inside the step (through a host callback). Either way the
error is a ValueError naming the image, the slot and the value, and neither
path hangs or trains NaN weights.
"""

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import DETR


def _detr(matching):
    model = DETR(
        keras_vit.ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(16, 16, 32, 32)),
        num_classes=3, num_queries=5, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=2, ffn_dim=19,
        dropout_rate=0.0, matching=matching,
    )
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    return model


def _data(count=5, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (count, 64, 64, 3)).astype("float32")
    boxes = np.tile(np.array([[2.0, 3.0, 20.0, 25.0], [10.0, 4.0, 30.0, 14.0], [0, 0, 0, 0]], "float32"), (count, 1, 1))
    labels = np.tile(np.array([1, 2, -1], "int32"), (count, 1))
    return images, {"boxes": boxes, "labels": labels}


class Batches(keras.utils.PyDataset):
    """Targets that only the step sees (no array for fit to check up front)."""

    def __init__(self, images, targets, batch_size):
        super().__init__()
        self.images, self.targets, self.batch_size = images, targets, batch_size

    def __len__(self):
        return int(np.ceil(len(self.images) / self.batch_size))

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.images[part], {k: v[part] for k, v in self.targets.items()}


BAD_TARGETS = [
    (lambda t: t["labels"].__setitem__((3, 1), 3), r"label 3 at image 3 of \w+( \w+)?, slot 1.*'no object' class"),
    (lambda t: t["labels"].__setitem__((2, 0), 7), r"label 7 at image 2 of \w+( \w+)?, slot 0.*num_classes > 7"),
    (lambda t: t["labels"].__setitem__((4, 1), -3), r"label -3 at image [04] of \w+( \w+)?, slot 1.*-1 marks padding"),
    (lambda t: t["boxes"].__setitem__((1, 0, 2), np.nan), r"box \[2.0, 3.0, nan, 25.0\] at image 1 of \w+( \w+)?, slot 0"),
]


@pytest.mark.parametrize("damage, match", BAD_TARGETS)
def test_bad_targets_in_arrays_fail_before_any_step(damage, match):
    model = _detr("ops")
    images, targets = _data()
    damage(targets)
    before = [np.array(v) for v in model.get_weights()]
    with pytest.raises(ValueError, match=match.replace(r"\w+( \w+)?", "y")):
        model.fit(images, targets, batch_size=4, epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def _restore_if_lost(model, weights):
    if keras.backend.backend() != "jax":
        return model
    # The failed step had taken the buffers of the weights and the optimizer
    # state: the model says so instead of failing later with JAX's "Array
    # has been deleted", and works again once they are loaded.
    with pytest.raises(RuntimeError, match="lost its weights when an earlier fit"):
        model.predict_detections(np.zeros((1, 64, 64, 3), "float32"))
    with pytest.raises(RuntimeError, match="compile\\(\\) again"):
        model.fit(np.zeros((1, 64, 64, 3), "float32"), _data(1)[1], verbose=0)
    for variable in model.weights:
        variable.assign(weights[variable.path])
    model.predict_detections(np.zeros((1, 64, 64, 3), "float32"))
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    return model


@pytest.mark.parametrize("matching", ["host", "ops"])
def test_the_training_step_checks_what_it_is_given(matching):
    model = _detr(matching)
    images, targets = _data()
    # 5 images in batches of 4: TensorFlow traces the step with an unknown
    # batch, which the in-graph matching used to fail on.
    history = model.fit(images, targets, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    weights = {v.path: np.array(v) for v in model.weights}
    assert all(np.isfinite(w).all() for w in weights.values())

    # A NaN pixel: the matching cost is not finite. The in-graph solver used
    # to hang on TensorFlow and train NaN weights on JAX and torch; scipy
    # failed with "matrix contains invalid numeric entries".
    nan_images = images.copy()
    nan_images[2, 5, 5, 1] = np.nan
    with pytest.raises(ValueError, match=r"predicted logits or boxes are NaN or inf for image\(s\) \[2\] of the batch"):
        model.fit(Batches(nan_images, targets, 4), epochs=1, verbose=0)
    _restore_if_lost(model, weights)

    # Targets only the step sees (a dataset): checked inside the step.
    bad = {k: v.copy() for k, v in targets.items()}
    bad["labels"][4, 0] = 3  # in the second (partial) batch: its image 0
    with pytest.raises(ValueError, match=r"label 3 at image 0 of the batch, slot 0.*'no object' class"):
        model.fit(Batches(images, bad, 4), epochs=1, verbose=0)
    _restore_if_lost(model, weights)
    assert np.isfinite(model.predict_detections(images[:1])["scores"]).all()
