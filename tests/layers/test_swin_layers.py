"""Swin's layers alone against timm's and transformers' (random weights, odd sizes)."""

import keras
import numpy as np
import pytest

from keras_vit.layers.swin_block import SwinPatchMerging
from keras_vit.layers.swin_block import SwinTransformerBlock
from keras_vit.layers.swin_block import SwinWindowAttention
from keras_vit.layers.swin_block import relative_position_index
from keras_vit.layers.swin_block import shifted_window_mask
from keras_vit.layers.swin_block import window_partition
from layer_checks import check_config_round_trip
from reference_models import max_abs_diff

torch = pytest.importorskip("torch")
timm_swin = pytest.importorskip("timm.models.swin_transformer")
hf_swin = pytest.importorskip("transformers.models.swin.modeling_swin")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-5


def _random(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3 + (1.0 if name.endswith("norm.weight") else 0.0))
    return module.eval()


def _linear(dense, torch_linear):
    weights = [torch_linear.weight.detach().numpy().T]
    if torch_linear.bias is not None:
        weights.append(torch_linear.bias.detach().numpy())
    dense.set_weights(weights)


def _norm(layer, torch_norm):
    layer.set_weights([torch_norm.weight.detach().numpy(), torch_norm.bias.detach().numpy()])


@pytest.mark.parametrize("window", [1, 3, 4])
def test_relative_position_index_is_timms(window):
    np.testing.assert_array_equal(relative_position_index(window), timm_swin.get_relative_position_index(window, window).numpy())


@pytest.mark.parametrize("size, window, shift", [((6, 9), 3, 1), ((8, 8), 4, 2), ((12, 6), 3, 1)])
def test_shifted_window_mask_is_the_references(size, window, shift):
    """transformers builds it on the padded size (equal to timm's there);
    regions of the shifted map that came from different places get -100."""
    config = transformers.SwinConfig(embed_dim=6, window_size=window)
    layer = hf_swin.SwinLayer(config, 6, size, 3, shift_size=shift)
    expected = layer.get_attn_mask(*size, dtype=torch.float32, device="cpu").numpy()
    mask = shifted_window_mask(*size, window, shift)
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) == {0.0, -100.0}


def test_window_attention_with_mask_matches_timm():
    reference = _random(timm_swin.WindowAttention(15, num_heads=5, window_size=3))
    layer = SwinWindowAttention(15, 5, 3)
    x = np.random.default_rng(0).normal(size=(2, 4, 9, 15)).astype("float32")  # (B, windows, tokens, D)
    mask = shifted_window_mask(6, 6, 3, 1)
    layer(x, attention_mask=mask)
    _linear(layer.qkv, reference.qkv)
    _linear(layer.proj, reference.proj)
    layer.relative_position_bias_table.assign(reference.relative_position_bias_table.detach().numpy())
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.reshape(8, 9, 15)), mask=torch.from_numpy(mask)).reshape(2, 4, 9, 15)
    assert max_abs_diff(layer(x, attention_mask=mask), expected) <= TOLERANCE
    # Without the mask the output differs: the mask is not a no-op.
    assert max_abs_diff(layer(x), expected) > 1e-3
    check_config_round_trip(layer, x)


def _hf_layer(dim, heads, window, shift, size):
    config = transformers.SwinConfig(embed_dim=dim, window_size=window, hidden_act="gelu", layer_norm_eps=1e-5)
    config._attn_implementation = "eager"
    return _random(hf_swin.SwinLayer(config, dim, size, heads, shift_size=shift))


def _load_hf_layer(block, reference):
    _norm(block.norm1, reference.layernorm_before)
    attention = reference.attention
    kernel = torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]).detach().numpy().T
    bias = torch.cat([attention.q_proj.bias, attention.k_proj.bias, attention.v_proj.bias]).detach().numpy()
    block.attention.qkv.set_weights([kernel, bias])
    _linear(block.attention.proj, attention.o_proj)
    block.attention.relative_position_bias_table.assign(
        attention.relative_position_bias.relative_position_bias_table.detach().numpy()
    )
    _norm(block.norm2, reference.layernorm_after)
    _linear(block.fc1, reference.mlp.fc1)
    _linear(block.fc2, reference.mlp.fc2)


@pytest.mark.parametrize("shift", [0, 1], ids=["window", "shifted"])
def test_block_pads_then_shifts_as_transformers(shift):
    """A 7x11 map with window 3: padded to 9x12, shifted, masked, cropped."""
    size = (7, 11)
    reference = _hf_layer(15, 5, 3, shift, size)
    block = SwinTransformerBlock(15, 5, 3, shift_size=shift)
    x = np.random.default_rng(1).normal(size=(2, *size, 15)).astype("float32")
    block(x)
    _load_hf_layer(block, reference)
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(x.reshape(2, -1, 15)), size)
    assert max_abs_diff(block(x), expected.reshape(2, *size, 15)) <= TOLERANCE
    if shift:
        check_config_round_trip(block, x)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="an unknown height only exists in TensorFlow graphs")
def test_unknown_size_in_a_tensorflow_graph_gives_the_same_map():
    """The mask and padding computed in the graph (height and width unknown
    when traced) equal the numpy constants of a known size."""
    import tensorflow as tf

    block = SwinTransformerBlock(6, 3, 3, shift_size=1)
    x = np.random.default_rng(2).normal(size=(1, 7, 8, 6)).astype("float32")
    expected = keras.ops.convert_to_numpy(block(x))
    traced = tf.function(block, input_signature=[tf.TensorSpec((None, None, None, 6), tf.float32)])
    np.testing.assert_allclose(traced(x).numpy(), expected, atol=1e-6)
    merging = SwinPatchMerging(6)
    direct = keras.ops.convert_to_numpy(merging(x))
    traced = tf.function(merging, input_signature=[tf.TensorSpec((None, None, None, 6), tf.float32)])
    np.testing.assert_allclose(traced(x).numpy(), direct, atol=1e-6)


@pytest.mark.parametrize("size", [(6, 8), (5, 7)], ids=["even", "odd"])
def test_patch_merging_matches_timm(size):
    reference = _random(timm_swin.PatchMerging(5))
    layer = SwinPatchMerging(5)
    x = np.random.default_rng(3).normal(size=(2, *size, 5)).astype("float32")
    layer(x)
    _norm(layer.norm, reference.norm)
    layer.reduction.set_weights([reference.reduction.weight.detach().numpy().T])
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))
    out = layer(x)
    assert tuple(out.shape) == (2, (size[0] + 1) // 2, (size[1] + 1) // 2, 10)
    assert max_abs_diff(out, expected) <= TOLERANCE
    check_config_round_trip(layer, x)


def test_window_partition_order():
    """Windows in row-major order, tokens row-major inside each window."""
    x = np.arange(4 * 6).reshape(1, 4, 6, 1).astype("float32")
    windows = keras.ops.convert_to_numpy(window_partition(x, 2, 4, 6))
    assert windows.shape == (1, 6, 4, 1)
    np.testing.assert_array_equal(windows[0, 1, :, 0], [2, 3, 8, 9])
    np.testing.assert_array_equal(windows[0, 3, :, 0], [12, 13, 18, 19])


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="shift_size must be smaller than window_size"):
        SwinTransformerBlock(6, 3, 3, shift_size=3)
    with pytest.raises(ValueError, match="num_heads must divide hidden_dim"):
        SwinWindowAttention(10, 3, 3)
    with pytest.raises(ValueError, match="mlp_ratio"):
        SwinTransformerBlock(6, 3, 3, mlp_ratio=0)
