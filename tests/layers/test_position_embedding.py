import numpy as np
import pytest

from keras_vit.layers import PositionEmbedding
from keras_vit.ops.interpolation import resize_position_embedding
from layer_checks import check_config_round_trip
from layer_checks import to_np


def test_adds_the_table():
    layer = PositionEmbedding(grid_size=(2, 3), num_prefix_tokens=1)
    tokens = np.random.default_rng(0).normal(size=(2, 7, 5)).astype("float32")
    out = to_np(layer(tokens))
    (table,) = layer.get_weights()
    assert table.shape == (1, 7, 5)
    np.testing.assert_allclose(out, tokens + table, atol=1e-6)


def test_resized_embedding_keeps_the_class_row():
    layer = PositionEmbedding(grid_size=(4, 4))
    layer(np.zeros((1, 17, 6), "float32"))
    (table,) = layer.get_weights()
    resized = layer.resized_embedding((6, 5))
    assert resized.shape == (1, 1 + 30, 6)
    np.testing.assert_array_equal(resized[:, 0], table[:, 0])
    np.testing.assert_allclose(
        resized, resize_position_embedding(table, (4, 4), (6, 5)), atol=0
    )
    # Same grid: identity.
    np.testing.assert_allclose(layer.resized_embedding((4, 4)), table, atol=1e-7)


def test_wrong_token_count_is_rejected():
    layer = PositionEmbedding(grid_size=(2, 2))
    with pytest.raises(ValueError, match="expects 5 tokens"):
        layer(np.zeros((1, 6, 4), "float32"))


def test_bad_prefix_count():
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        PositionEmbedding(grid_size=2, num_prefix_tokens=-1)


def test_config_round_trip():
    check_config_round_trip(PositionEmbedding((2, 3), 0), np.zeros((1, 6, 4), "float32"))
