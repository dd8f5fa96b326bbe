import numpy as np
import pytest

from keras_vit.layers import LayerScale
from layer_checks import check_config_round_trip
from layer_checks import to_np


def test_scales_each_channel():
    x = np.ones((2, 3, 4), "float32")
    np.testing.assert_allclose(to_np(LayerScale(0.1)(x)), 0.1 * x, atol=1e-7)


def test_bad_init_value():
    with pytest.raises(TypeError, match="init_value"):
        LayerScale("big")


def test_config_round_trip():
    check_config_round_trip(LayerScale(1e-5), np.zeros((1, 3, 8), "float32"))
