"""Segmenter's decoders against a plain numpy implementation written from the
paper (tests/segmenter_reference.py) with hand-set weights, on odd sizes and
a non-square grid; config round trips; bad inputs named."""

import keras
import numpy as np
import pytest

from keras_vit.layers import SegmenterLinearDecoder
from keras_vit.layers import SegmenterMaskTransformer
from layer_checks import check_config_round_trip
from layer_checks import to_np
from segmenter_reference import linear_decoder
from segmenter_reference import mask_transformer
from segmenter_reference import random_decoder_weights

TOLERANCE = 1e-4
GRID = (3, 5)


def _set_mask_transformer(layer, weights):
    def dense(dense_layer, name):
        dense_layer.kernel.assign(weights[f"{name}.weight"].T.astype("float32"))
        dense_layer.bias.assign(weights[f"{name}.bias"].astype("float32"))

    def norm(norm_layer, name):
        norm_layer.gamma.assign(weights[f"{name}.weight"].astype("float32"))
        norm_layer.beta.assign(weights[f"{name}.bias"].astype("float32"))

    dense(layer.proj_dec, "proj_dec")
    layer.class_embeddings.assign(weights["cls_emb"].astype("float32"))
    for i, block in enumerate(layer.blocks):
        p = f"blocks.{i}"
        norm(block.norm1, f"{p}.norm1")
        dense(block.attention.qkv, f"{p}.attn.qkv")
        dense(block.attention.proj, f"{p}.attn.proj")
        norm(block.norm2, f"{p}.norm2")
        dense(block.fc1, f"{p}.mlp.fc1")
        dense(block.fc2, f"{p}.mlp.fc2")
    norm(layer.decoder_norm, "decoder_norm")
    layer.proj_patch.assign(weights["proj_patch"].astype("float32"))
    layer.proj_classes.assign(weights["proj_classes"].astype("float32"))
    norm(layer.mask_norm, "mask_norm")


@pytest.mark.parametrize("layers", [1, 2])
def test_mask_transformer_equals_numpy_from_the_paper(layers):
    rng = np.random.default_rng(layers)
    width, classes, heads, mlp = 12, 7, 3, 20
    weights = random_decoder_weights(rng, width, classes, layers, mlp)
    tokens = rng.normal(size=(2, GRID[0] * GRID[1], width))
    layer = SegmenterMaskTransformer(classes, GRID, num_layers=layers, num_heads=heads, mlp_dim=mlp)
    layer(tokens.astype("float32"))
    _set_mask_transformer(layer, weights)
    got = to_np(layer(tokens.astype("float32"), training=False))
    expected = mask_transformer(tokens, weights, GRID, heads)
    assert got.shape == (2, *GRID, classes)
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    # Permuting the class embeddings (and mask_norm's per-class affine) permutes the output classes.
    permutation = rng.permutation(classes)
    swapped = dict(weights, cls_emb=weights["cls_emb"][:, permutation],
                   **{"mask_norm.weight": weights["mask_norm.weight"][permutation],
                      "mask_norm.bias": weights["mask_norm.bias"][permutation]})
    _set_mask_transformer(layer, swapped)
    np.testing.assert_allclose(to_np(layer(tokens.astype("float32"))), got[..., permutation], atol=TOLERANCE)


def test_mask_transformer_defaults_follow_the_official_code():
    layer = SegmenterMaskTransformer(150, (2, 2))
    layer(np.zeros((1, 4, 128), "float32"))
    assert layer.heads == 2 and layer.width == 128  # D / 64 heads, the encoder's width
    assert layer.blocks[0].mlp_dim == 512 and layer.blocks[0].dropout_rate == 0.1
    assert layer.blocks[0].attention_dropout_rate == 0.1 and layer.decoder_norm.epsilon == 1e-5
    assert tuple(layer.class_embeddings.shape) == (1, 150, 128)
    assert layer.count_params() == (
        128 * 128 + 128 + 150 * 128 + 2 * (12 * 128 * 128 + 13 * 128) + 2 * 128 + 2 * 128 * 128 + 2 * 150
    )


def test_linear_decoder_equals_numpy():
    rng = np.random.default_rng(3)
    tokens = rng.normal(size=(2, GRID[0] * GRID[1], 9))
    weights = {"head.weight": rng.normal(size=(4, 9)), "head.bias": rng.normal(size=4)}
    layer = SegmenterLinearDecoder(4, GRID)
    layer(tokens.astype("float32"))
    layer.head.kernel.assign(weights["head.weight"].T.astype("float32"))
    layer.head.bias.assign(weights["head.bias"].astype("float32"))
    got = to_np(layer(tokens.astype("float32")))
    assert np.max(np.abs(got - linear_decoder(tokens, weights, GRID))) <= TOLERANCE


def test_config_round_trips():
    tokens = np.random.default_rng(0).normal(size=(2, 15, 12)).astype("float32")
    check_config_round_trip(SegmenterLinearDecoder(4, GRID), tokens)
    check_config_round_trip(
        SegmenterMaskTransformer(4, GRID, num_heads=3, dropout_rate=0.0, drop_path_rate=0.0), tokens
    )


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"tokens must be \(B, 15, D\).*prefix tokens removed"):
        SegmenterLinearDecoder(4, GRID)(keras.ops.zeros((1, 16, 8)))
    with pytest.raises(ValueError, match="num_heads=5 must divide the decoder width 12"):
        SegmenterMaskTransformer(4, GRID, num_heads=5)(keras.ops.zeros((1, 15, 12)))
    with pytest.raises(ValueError, match="num_classes"):
        SegmenterMaskTransformer(0, GRID)
