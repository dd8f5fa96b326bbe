"""ViTDet's layers alone: each against transformers' `VitDet*` functions or
torch (random weights, odd sizes), and each layer's config round trip."""

import keras
import numpy as np
import pytest

from keras_vit.layers.vitdet_block import ConvTranspose2x2
from keras_vit.layers.vitdet_block import LastLevelMaxPool
from keras_vit.layers.vitdet_block import SimpleFeaturePyramidLevel
from keras_vit.layers.vitdet_block import ViTDetAttention
from keras_vit.layers.vitdet_block import ViTDetBlock
from keras_vit.layers.vitdet_block import ViTDetPositionEmbedding
from keras_vit.layers.vitdet_block import ViTDetResidualBlock
from keras_vit.layers.vitdet_block import relative_position_lookup
from keras_vit.layers.vitdet_block import window_partition
from keras_vit.layers.vitdet_block import window_unpartition
from layer_checks import check_config_round_trip
from reference_models import max_abs_diff

torch = pytest.importorskip("torch")
hf_vitdet = pytest.importorskip("transformers.models.vitdet.modeling_vitdet")
from vitdet_reference import SimpleFeaturePyramid  # noqa: E402 - imports torch

TOLERANCE = 1e-5


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("table, size", [(7, 4), (9, 5), (19, 7), (5, 6)])
def test_relative_position_lookup_is_get_rel_pos(table, size):
    """The table linearly resized (up and down) or used as is, then indexed."""
    rel_pos = np.random.default_rng(table).normal(size=(table, 3)).astype("float32")
    expected = hf_vitdet.get_rel_pos(size, size, torch.from_numpy(rel_pos)).numpy()
    matrix, index = relative_position_lookup(table, size, size)
    resized = rel_pos if matrix is None else matrix @ rel_pos
    np.testing.assert_allclose(resized[index], expected, atol=TOLERANCE)  # torch weighs in float32


@pytest.mark.parametrize("grid", [(5, 7), (4, 4), (9, 3)])
def test_position_embedding_is_get_absolute_positions(grid):
    """Bicubic (a = -0.75, align_corners=False) from the pre-training grid, class row dropped."""
    layer = ViTDetPositionEmbedding(grid_size=4)
    x = np.zeros((1, *grid, 6), "float32")
    layer(x)
    table = np.random.default_rng(1).normal(size=(17, 6)).astype("float32")
    layer.set_weights([table])
    embeddings = hf_vitdet.VitDetEmbeddings.get_absolute_positions(None, torch.from_numpy(table[None]), True, *grid)
    assert max_abs_diff(layer(x), embeddings) <= TOLERANCE


def test_window_partition_pads_and_unpartition_crops():
    x = np.arange(2 * 5 * 7 * 3, dtype="float32").reshape(2, 5, 7, 3)
    windows = window_partition(keras.ops.convert_to_tensor(x), 3, 5, 7)
    expected, pad = hf_vitdet.window_partition(torch.from_numpy(x), 3)
    assert tuple(windows.shape) == (2, 6, 3, 3, 3) and pad == (6, 9)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(windows).reshape(-1, 3, 3, 3), expected.numpy())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(window_unpartition(windows, 3, 5, 7)), x)


@pytest.mark.parametrize("window", [0, 3], ids=["global", "window"])
def test_block_matches_transformers_layer(window):
    """A window block on a 5 x 7 map (padded to 6 x 9) with tables for a
    4-wide window (resized to 3), or a global block with tables for 4 x 6
    (resized to 5 x 7); the residual convolution block after it."""
    config = hf_vitdet.VitDetConfig(
        hidden_size=12, num_attention_heads=3, mlp_ratio=2, image_size=(16, 24), patch_size=4, window_size=4,
        use_relative_position_embeddings=True, layer_norm_eps=1e-6,
    )
    reference = hf_vitdet.VitDetLayer(config, window_size=4 if window else 0, use_residual_block=True)
    generator = torch.Generator().manual_seed(window)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    reference.window_size = window  # run it at the smaller window, as a model built for another size would
    reference.eval()
    block = ViTDetBlock(12, 3, window_size=window, rel_pos_size=(4, 4) if window else (4, 6), mlp_ratio=2, use_residual_block=True)
    x = np.random.default_rng(2).normal(size=(2, 5, 7, 12)).astype("float32")
    block(x)
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    attention, residual = block.attention, block.residual
    block.norm1.set_weights([state["norm1.weight"], state["norm1.bias"]])
    block.norm2.set_weights([state["norm2.weight"], state["norm2.bias"]])
    attention.qkv.set_weights([state["attention.qkv.weight"].T, state["attention.qkv.bias"]])
    attention.proj.set_weights([state["attention.proj.weight"].T, state["attention.proj.bias"]])
    attention.rel_pos_h.assign(state["attention.rel_pos_h"])
    attention.rel_pos_w.assign(state["attention.rel_pos_w"])
    block.fc1.set_weights([state["mlp.fc1.weight"].T, state["mlp.fc1.bias"]])
    block.fc2.set_weights([state["mlp.fc2.weight"].T, state["mlp.fc2.bias"]])
    for i in (1, 2, 3):
        getattr(residual, f"conv{i}").set_weights([state[f"residual.conv{i}.weight"].transpose(2, 3, 1, 0)])
        getattr(residual, f"norm{i}").set_weights([state[f"residual.norm{i}.weight"], state[f"residual.norm{i}.bias"]])
    with torch.no_grad():
        expected = reference(_nchw(x))[0].permute(0, 2, 3, 1)
    assert max_abs_diff(block(x), expected) <= TOLERANCE
    check_config_round_trip(block, x)


def test_conv_transpose_is_torchs():
    reference = torch.nn.ConvTranspose2d(5, 3, 2, 2)
    layer = ConvTranspose2x2(3)
    x = np.random.default_rng(3).normal(size=(2, 3, 4, 5)).astype("float32")
    layer(x)
    layer.set_weights([reference.weight.detach().numpy().transpose(2, 3, 1, 0), reference.bias.detach().numpy()])
    with torch.no_grad():
        expected = reference(_nchw(x)).permute(0, 2, 3, 1)
    assert max_abs_diff(layer(x), expected) <= TOLERANCE
    check_config_round_trip(layer, x)


def test_pyramid_levels_match_the_paper_reference():
    """Every scale on a 5 x 7 map of width 12 (the max-pool floors it to
    2 x 3), hand-set random weights in detectron2's stage layout."""
    reference = SimpleFeaturePyramid(12, 8)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            scale = 1.0 if param.ndim == 1 and name.endswith("weight") else 0.0  # the LayerNorms' scales near 1
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3 + scale)
    x = np.random.default_rng(5).normal(size=(2, 5, 7, 12)).astype("float32")
    with torch.no_grad():
        expected = reference(_nchw(x))
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    convs = {2: (4, 5), 3: (1, 2), 4: (0, 1), 5: (1, 2)}
    for stage, scale in zip((2, 3, 4, 5), (4.0, 2.0, 1.0, 0.5)):
        level = SimpleFeaturePyramidLevel(scale, 8)
        level(x)
        prefix = f"simfp_{stage}"
        if stage <= 3:
            level.upsample_1.set_weights([state[f"{prefix}.0.weight"].transpose(2, 3, 1, 0), state[f"{prefix}.0.bias"]])
        if stage == 2:
            level.upsample_norm.set_weights([state[f"{prefix}.1.weight"], state[f"{prefix}.1.bias"]])
            level.upsample_2.set_weights([state[f"{prefix}.3.weight"].transpose(2, 3, 1, 0), state[f"{prefix}.3.bias"]])
        lateral, output = convs[stage]
        level.lateral.set_weights([state[f"{prefix}.{lateral}.weight"].transpose(2, 3, 1, 0)])
        level.lateral_norm.set_weights([state[f"{prefix}.{lateral}.norm.weight"], state[f"{prefix}.{lateral}.norm.bias"]])
        level.output_conv.set_weights([state[f"{prefix}.{output}.weight"].transpose(2, 3, 1, 0)])
        level.output_norm.set_weights([state[f"{prefix}.{output}.norm.weight"], state[f"{prefix}.{output}.norm.bias"]])
        got = level(x)
        assert max_abs_diff(got, expected[f"P{stage}"].permute(0, 2, 3, 1)) <= TOLERANCE, stage
        assert tuple(level.compute_output_shape(x.shape)) == tuple(got.shape)
        check_config_round_trip(level, x)
    p6 = LastLevelMaxPool()
    assert max_abs_diff(p6(expected["P5"].permute(0, 2, 3, 1).numpy()), expected["P6"].permute(0, 2, 3, 1)) == 0.0


def test_other_layers_round_trip_and_refuse_bad_arguments():
    x = np.random.default_rng(6).normal(size=(1, 3, 5, 8)).astype("float32")
    check_config_round_trip(ViTDetPositionEmbedding(grid_size=2), x)
    check_config_round_trip(ViTDetResidualBlock(8), x)
    check_config_round_trip(ViTDetAttention(8, 2, rel_pos_size=(2, 3)), x[:, None])
    with pytest.raises(ValueError, match="scale must be one of"):
        SimpleFeaturePyramidLevel(3.0)
    with pytest.raises(ValueError, match="window_size must be an int >= 0"):
        ViTDetBlock(8, 2, window_size=-1)
    with pytest.raises(ValueError, match="num_heads must divide hidden_dim"):
        ViTDetAttention(8, 3)
    with pytest.raises(ValueError, match="needs a known height and width"):
        ViTDetBlock(8, 2).build((None, None, None, 8))
