"""Tasks own their preprocessing: fit, evaluate and predict take raw images."""

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import ViT
from keras_vit import ViTBackbone
from layer_checks import to_np


def _model():
    backbone = ViTBackbone(image_shape=(30, 30, 3), patch_size=3, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37)
    preprocessor = keras_vit.ViTImagePreprocessor(30, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return ViT(backbone, num_classes=3, preprocessor=preprocessor)


def _raw(count=8, size=(45, 40), seed=0):
    """Photographs as users have them: uint8 pixels of another size than the model's."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *size, 3)).astype("uint8"), rng.integers(0, 3, size=(count,))


def test_predict_applies_the_preprocessor():
    model = _model()
    images, _ = _raw()
    expected = to_np(model(model.preprocessor(images)))
    np.testing.assert_allclose(model.predict(images, batch_size=3, verbose=0), expected, atol=1e-5)
    np.testing.assert_allclose(to_np(model.predict_on_batch(images)), expected, atol=1e-5)


def test_fit_and_evaluate_take_raw_images():
    model = _model()
    images, labels = _raw(16)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    metrics = model.evaluate(images, labels, batch_size=8, verbose=0, return_dict=True)
    # evaluate sees the same preprocessed images as a by-hand evaluation.
    logits = to_np(model(model.preprocessor(images)))
    by_hand = float(np.mean(np.argmax(logits, -1) == labels))
    assert abs(metrics["accuracy"] - by_hand) < 1e-6


def test_a_model_without_preprocessor_takes_model_inputs():
    model = ViT(ViTBackbone(image_shape=(30, 30, 3), patch_size=3, hidden_dim=32, num_layers=1, num_heads=4, mlp_dim=37), num_classes=3)
    x = np.random.default_rng(0).normal(size=(2, 30, 30, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), to_np(model(x)), atol=1e-5)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((0, 30, 30, 3), "uint8"), "empty"),
        (np.zeros((2, 30, 30, 4), "uint8"), "3 channels"),
        (np.zeros((30, 30, 3), "uint8"), "rank 4"),
    ],
)
def test_rejected_inputs_leave_the_model_working(images, match):
    model = _model()
    good, _ = _raw(2)
    before = model.predict(good, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.predict(images, verbose=0)
    np.testing.assert_allclose(model.predict(good, verbose=0), before, atol=1e-6)
