import keras
import numpy as np
import pytest

from keras_vit.layers import TransformerEncoderBlock
from layer_checks import check_config_round_trip
from layer_checks import to_np


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_matches_hand_computation():
    from math import erf

    block = TransformerEncoderBlock(8, 2, 11, layer_norm_epsilon=1e-6, layer_scale_init=0.5)
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float64")
    block(x.astype("float32"))
    rng = np.random.default_rng(1)
    for w in block.weights:  # random values everywhere, gammas included
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.3)
    attn_out = keras.ops.convert_to_numpy(block.attention(_layer_norm(
        x, to_np(block.norm1.gamma), to_np(block.norm1.beta), 1e-6).astype("float32")))
    y = x + to_np(block.layer_scale1.gamma) * attn_out
    h = _layer_norm(y, to_np(block.norm2.gamma), to_np(block.norm2.beta), 1e-6)
    h = h @ to_np(block.fc1.kernel) + to_np(block.fc1.bias)
    h = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))  # exact GELU
    h = h @ to_np(block.fc2.kernel) + to_np(block.fc2.bias)
    expected = y + to_np(block.layer_scale2.gamma) * h
    out = keras.ops.convert_to_numpy(block(x.astype("float32")))
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_tanh_and_exact_gelu_differ():
    x = np.random.default_rng(0).normal(size=(1, 4, 8)).astype("float32")
    exact = TransformerEncoderBlock(8, 2, 16, gelu_approximate=False)
    approx = TransformerEncoderBlock(8, 2, 16, gelu_approximate=True)
    exact(x)
    approx(x)
    approx.set_weights(exact.get_weights())
    diff = np.abs(keras.ops.convert_to_numpy(exact(x)) - keras.ops.convert_to_numpy(approx(x)))
    assert 0 < diff.max() < 1e-2


def test_attention_scores_and_fused_path_agree():
    block = TransformerEncoderBlock(8, 2, 16)
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    fused = keras.ops.convert_to_numpy(block(x))
    out, scores = block(x, return_attention_scores=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), fused, atol=1e-5)
    scores = keras.ops.convert_to_numpy(scores)
    assert scores.shape == (2, 2, 6, 6)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dropout_rate": -0.5}, "dropout_rate"),
        ({"drop_path_rate": 1.5}, "drop_path_rate"),
        ({"attention_dropout_rate": -1e-3}, "attention_dropout_rate"),
        ({"layer_scale_init": -1.0}, "layer_scale_init"),
        ({"layer_norm_epsilon": 0.0}, "layer_norm_epsilon"),
        ({"num_heads": 3}, "num_heads must divide hidden_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"hidden_dim": 8, "num_heads": 2, "mlp_dim": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        TransformerEncoderBlock(**args)


def test_config_round_trip():
    check_config_round_trip(
        TransformerEncoderBlock(
            8, 2, 11, dropout_rate=0.1, attention_dropout_rate=0.1, drop_path_rate=0.1,
            layer_scale_init=1e-5, layer_norm_epsilon=1e-12, gelu_approximate=True,
            qkv_bias=False,
        ),
        np.zeros((1, 3, 8), "float32"),
    )
