import numpy as np
import pytest

from keras_vit.layers import ViTImagePreprocessor
from layer_checks import check_config_round_trip
from layer_checks import to_np


def test_inception_range_and_resize():
    layer = ViTImagePreprocessor(image_size=(8, 6))
    images = np.full((2, 16, 12, 3), 255.0, "float32")
    images[:, :, :, 1] = 0.0
    out = to_np(layer(images))
    assert out.shape == (2, 8, 6, 3)
    np.testing.assert_allclose(out[..., 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[..., 1], -1.0, atol=1e-6)


def test_imagenet_mean_std():
    layer = ViTImagePreprocessor(4, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    images = np.random.default_rng(0).uniform(0, 255, size=(1, 4, 4, 3)).astype("float32")
    expected = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(to_np(layer(images)), expected, atol=1e-5)


def test_channel_mismatch():
    with pytest.raises(ValueError, match="3 values but the images have 1 channels"):
        ViTImagePreprocessor(4)(np.zeros((1, 4, 4, 1), "float32"))


def test_config_round_trip():
    check_config_round_trip(ViTImagePreprocessor((4, 4)), np.zeros((1, 8, 8, 3), "float32"))
