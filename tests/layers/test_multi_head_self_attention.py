import keras
import numpy as np
import pytest

from keras_vit.layers import MultiHeadSelfAttention
from layer_checks import check_config_round_trip
from layer_checks import to_np


def _reference(x, kernel, bias, proj_kernel, proj_bias, heads):
    """Plain numpy multi-head attention, heads split as [q heads; k heads; v heads]."""
    batch, n, d = x.shape
    dh = d // heads
    qkv = (x @ kernel + bias).reshape(batch, n, 3, heads, dh)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(dh)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.einsum("bhnm,bmhd->bnhd", probs, v).reshape(batch, n, d)
    return out @ proj_kernel + proj_bias, probs


def test_matches_numpy_reference_on_both_paths():
    layer = MultiHeadSelfAttention(hidden_dim=12, num_heads=3)
    x = np.random.default_rng(0).normal(size=(2, 7, 12)).astype("float32")
    layer(x)
    weights = [to_np(w, dtype="float64") for w in layer.get_weights()]
    expected, expected_probs = _reference(x.astype("float64"), *weights, heads=3)
    fused = keras.ops.convert_to_numpy(layer(x))
    explicit, probs = layer(x, return_attention_scores=True)
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(explicit), expected, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probs), expected_probs, atol=1e-6)
    assert tuple(probs.shape) == (2, 3, 7, 7)


def test_batch_of_two_equals_singles():
    layer = MultiHeadSelfAttention(hidden_dim=8, num_heads=2)
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype("float32")
    both = keras.ops.convert_to_numpy(layer(x))
    for i in range(2):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer(x[i : i + 1]))[0], both[i], atol=1e-6
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_dim": 10, "num_heads": 3}, "num_heads must divide hidden_dim"),
        ({"hidden_dim": 8, "num_heads": 2, "attention_dropout_rate": -0.1}, "attention_dropout_rate"),
        ({"hidden_dim": 8, "num_heads": 2, "attention_dropout_rate": 1.0}, "attention_dropout_rate"),
        ({"hidden_dim": 8, "num_heads": 0}, "num_heads"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadSelfAttention(**kwargs)


def test_config_round_trip():
    check_config_round_trip(
        MultiHeadSelfAttention(8, 2, qkv_bias=False, attention_dropout_rate=0.1),
        np.zeros((1, 3, 8), "float32"),
    )
