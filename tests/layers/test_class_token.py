import numpy as np

from keras_vit.layers import ClassToken
from layer_checks import check_config_round_trip
from layer_checks import to_np


def test_prepends_the_token():
    layer = ClassToken(initializer="ones")
    tokens = np.random.default_rng(0).normal(size=(2, 5, 7)).astype("float32")
    out = to_np(layer(tokens))
    assert out.shape == (2, 6, 7)
    np.testing.assert_array_equal(out[:, 0], np.ones((2, 7)))
    np.testing.assert_array_equal(out[:, 1:], tokens)


def test_config_round_trip():
    check_config_round_trip(ClassToken(initializer="random_normal"), np.zeros((1, 4, 8), "float32"))
