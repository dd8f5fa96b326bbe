import keras
import numpy as np
import pytest

from keras_vit.layers import DropPath
from layer_checks import check_config_round_trip


def test_identity_at_inference():
    x = np.ones((4, 3, 2), "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(DropPath(0.5)(x)), x)


def test_drops_whole_samples_and_keeps_the_mean():
    layer = DropPath(0.25, seed=3)
    x = np.ones((4000, 3, 2), "float32")
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    per_sample = out.reshape(4000, -1)
    # Each sample is either dropped or scaled by 1 / 0.75, all elements alike.
    assert np.all(per_sample.min(1) == per_sample.max(1))
    kept = per_sample[per_sample[:, 0] != 0]
    np.testing.assert_allclose(kept, 1 / 0.75, rtol=1e-6)
    assert abs(per_sample.mean() - 1.0) < 0.05
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        DropPath(rate)


def test_config_round_trip():
    check_config_round_trip(DropPath(0.1, seed=2), np.zeros((1, 3, 8), "float32"))
