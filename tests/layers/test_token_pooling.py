import numpy as np
import pytest

from keras_vit.layers import TokenPooling
from layer_checks import check_config_round_trip
from layer_checks import to_np


def test_token_and_gap():
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    np.testing.assert_array_equal(to_np(TokenPooling("token")(x)), x[:, 0])
    np.testing.assert_allclose(to_np(TokenPooling("gap", 1)(x)), x[:, 1:].mean(1), atol=1e-6)
    np.testing.assert_allclose(to_np(TokenPooling("gap", 0)(x)), x.mean(1), atol=1e-6)


def test_bad_modes():
    with pytest.raises(ValueError, match="pooling must be one of"):
        TokenPooling("max")
    with pytest.raises(ValueError, match="needs a class token"):
        TokenPooling("token", num_prefix_tokens=0)


def test_config_round_trip():
    check_config_round_trip(TokenPooling("gap", 1), np.zeros((1, 3, 8), "float32"))
