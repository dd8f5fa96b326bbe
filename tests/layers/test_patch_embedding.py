import numpy as np
import pytest

from keras_vit.layers import PatchEmbedding
from layer_checks import check_config_round_trip
from layer_checks import to_np


def test_output_shape_and_row_major_order():
    layer = PatchEmbedding(hidden_dim=4, patch_size=(3, 5))
    images = np.random.default_rng(0).normal(size=(2, 9, 10, 3)).astype("float32")
    out = to_np(layer(images))
    assert out.shape == (2, 6, 4)  # 3 x 2 grid
    kernel, bias = (to_np(w) for w in layer.get_weights())
    # Patch (row 1, col 0) is token 2 in row-major order.
    patch = images[:, 3:6, 0:5, :]
    expected = np.einsum("bhwc,hwcd->bd", patch, kernel) + bias
    np.testing.assert_allclose(out[:, 2], expected, rtol=1e-5, atol=1e-5)


def test_config_round_trip():
    check_config_round_trip(PatchEmbedding(8, 3), np.zeros((1, 6, 6, 3), "float32"))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"hidden_dim": 0, "patch_size": 3}, ValueError),
        ({"hidden_dim": 8, "patch_size": (3, 0)}, ValueError),
        ({"hidden_dim": 8.5, "patch_size": 3}, TypeError),
        ({"hidden_dim": 8, "patch_size": (1, 2, 3)}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="hidden_dim|patch_size"):
        PatchEmbedding(**kwargs)
