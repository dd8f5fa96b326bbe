"""DETR's post-norm layers equal transformers' DetrEncoderLayer / DetrDecoderLayer."""

import numpy as np
import pytest

from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.layers import DETRAttention
from keras_vit.layers import DETRDecoderLayer
from keras_vit.layers import DETREncoderLayer
from layer_checks import check_config_round_trip
from reference_models import max_abs_diff
from reference_models import randomize

torch = pytest.importorskip("torch")
detr = pytest.importorskip("transformers.models.detr.modeling_detr")
transformers = pytest.importorskip("transformers")

D, HEADS, FFN = 32, 4, 37


def _config():
    config = transformers.DetrConfig(
        d_model=D, encoder_attention_heads=HEADS, decoder_attention_heads=HEADS,
        encoder_ffn_dim=FFN, decoder_ffn_dim=FFN, use_timm_backbone=False, backbone_config=None,
        use_pretrained_backbone=False,
    )
    config._attn_implementation = "eager"
    return config


def _copy_attention(layer, state, prefix):
    for ours, theirs in (("query_dense", "q_proj"), ("key_dense", "k_proj"), ("value_dense", "v_proj"), ("output_dense", "o_proj")):
        linear(getattr(layer, ours), state, f"{prefix}.{theirs}")


def _additive_mask(valid, queries):
    # transformers wants (B, 1, N, M) additive masks: 0 to keep, a large negative to drop.
    mask = torch.from_numpy(valid)[:, None, None, :].expand(-1, 1, queries, -1)
    return torch.where(mask, 0.0, torch.finfo(torch.float32).min)


def _inputs(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_encoder_layer_matches_transformers():
    reference = randomize(detr.DetrEncoderLayer(_config()))
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    layer = DETREncoderLayer(D, HEADS, FFN)
    tokens, position = _inputs(0, (2, 11, D)), _inputs(1, (2, 11, D))
    valid = np.ones((2, 11), bool)
    valid[0, 7:] = False  # padded positions of image 0
    layer(tokens, position, valid)
    _copy_attention(layer.self_attention, state, "self_attn")
    layer_norm(layer.self_attention_norm, state, "self_attn_layer_norm")
    linear(layer.fc1, state, "mlp.fc1")
    linear(layer.fc2, state, "mlp.fc2")
    layer_norm(layer.final_norm, state, "final_layer_norm")
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(tokens), attention_mask=_additive_mask(valid, 11),
            spatial_position_embeddings=torch.from_numpy(position),
        )
    assert max_abs_diff(layer(tokens, position, valid), expected) <= 1e-4


def test_decoder_layer_matches_transformers():
    reference = randomize(detr.DetrDecoderLayer(_config()))
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    layer = DETRDecoderLayer(D, HEADS, FFN)
    queries, query_position = _inputs(2, (2, 5, D)), _inputs(3, (2, 5, D))
    memory, memory_position = _inputs(4, (2, 11, D)), _inputs(5, (2, 11, D))
    valid = np.ones((2, 11), bool)
    valid[1, 4:] = False
    layer(queries, memory, query_position, memory_position, valid)
    _copy_attention(layer.self_attention, state, "self_attn")
    layer_norm(layer.self_attention_norm, state, "self_attn_layer_norm")
    _copy_attention(layer.cross_attention, state, "encoder_attn")
    layer_norm(layer.cross_attention_norm, state, "encoder_attn_layer_norm")
    linear(layer.fc1, state, "mlp.fc1")
    linear(layer.fc2, state, "mlp.fc2")
    layer_norm(layer.final_norm, state, "final_layer_norm")
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(queries),
            object_queries_position_embeddings=torch.from_numpy(query_position),
            spatial_position_embeddings=torch.from_numpy(memory_position),
            encoder_hidden_states=torch.from_numpy(memory),
            encoder_attention_mask=_additive_mask(valid, 5),
        )
    assert max_abs_diff(layer(queries, memory, query_position, memory_position, valid), expected) <= 1e-4


def test_padding_is_ignored():
    layer = DETRAttention(D, HEADS)
    query, source = _inputs(0, (1, 3, D)), _inputs(1, (1, 6, D))
    garbage = source.copy()
    garbage[:, 4:] = 100.0
    valid = np.array([[True] * 4 + [False] * 2])
    a = layer(query, source, key_mask=valid)
    b = layer(query, garbage, key_mask=valid)
    assert max_abs_diff(a, b) <= 1e-6


def test_bad_arguments_and_config():
    with pytest.raises(ValueError, match="num_heads must divide hidden_dim"):
        DETRAttention(30, 4)
    with pytest.raises(ValueError, match="dropout_rate"):
        DETREncoderLayer(D, HEADS, FFN, dropout_rate=-0.1)
    check_config_round_trip(DETRAttention(D, HEADS, 0.1), _inputs(0, (1, 3, D)))
    check_config_round_trip(DETREncoderLayer(D, HEADS, FFN, dropout_rate=0.0), _inputs(0, (1, 3, D)))
    decoder = DETRDecoderLayer(D, HEADS, FFN, activation="gelu", layer_norm_epsilon=1e-6)
    assert DETRDecoderLayer.from_config(decoder.get_config()).get_config() == decoder.get_config()
