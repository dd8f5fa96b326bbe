"""DPT's reassemble, fusion and head layers equal transformers' modules
(`modeling_dpt`) with the same random weights, on odd tiny sizes and
non-square grids; each layer's config round-trips."""

import numpy as np
import pytest

from keras_vit.conversion import dpt as convert
from keras_vit.layers import DPTDepthHead
from keras_vit.layers import DPTFusionBlock
from keras_vit.layers import DPTReassemble
from keras_vit.layers import DPTResidualConvUnit
from keras_vit.layers import DPTSegmentationHead
from layer_checks import check_config_round_trip
from reference_models import max_abs_diff
from reference_models import randomize_module

torch = pytest.importorskip("torch")
modeling_dpt = pytest.importorskip("transformers.models.dpt.modeling_dpt")
from transformers import DPTConfig  # noqa: E402

TOLERANCE = 1e-4
WIDTH = 10  # fusion width


_randomize = randomize_module


def _config(**kwargs):
    args = dict(
        hidden_size=12, num_hidden_layers=4, num_attention_heads=3, intermediate_size=15, image_size=28,
        patch_size=4, neck_hidden_sizes=[6, 8, 10, 12], reassemble_factors=[4, 2, 1, 0.5],
        fusion_hidden_size=WIDTH, num_labels=5,
    )
    args.update(kwargs)
    return DPTConfig(**args)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("readout", ["ignore", "add", "project"])
@pytest.mark.parametrize("grid", [(3, 5)])  # non-square; the model tests use square grids
def test_reassemble_matches_transformers(readout, grid):
    config = _config(readout_type=readout)
    stage = _randomize(modeling_dpt.DPTReassembleStage(config))
    height, width = grid
    tokens = [np.random.default_rng(i).normal(size=(2, 1 + height * width, 12)).astype("float32") for i in range(4)]
    with torch.no_grad():
        expected = stage([torch.from_numpy(t) for t in tokens], patch_height=height, patch_width=width)
    state_dict = {f"neck.reassemble_stage.{k}": v for k, v in stage.state_dict().items()}
    for index, (filters, factor) in enumerate(zip([6, 8, 10, 12], [4, 2, 1, 0.5])):
        layer = DPTReassemble(filters, factor, grid, readout=readout)
        layer.build(tokens[index].shape)
        convert.load_reassemble(layer, state_dict, index)
        got = layer(tokens[index])
        size = (lambda n: (n + 1) // 2) if factor == 0.5 else (lambda n: n * factor)
        assert tuple(got.shape) == (2, size(height), size(width), filters)
        assert max_abs_diff(got, _nhwc(expected[index])) <= TOLERANCE, (index, factor)


@pytest.mark.parametrize("use_batch_norm", [False, True])
def test_fusion_block_matches_transformers(use_batch_norm):
    config = _config(use_batch_norm_in_fusion_residual=use_batch_norm)
    reference = _randomize(modeling_dpt.DPTFeatureFusionLayer(config))
    rng = np.random.default_rng(1)
    fused = rng.normal(size=(2, 4, 6, WIDTH)).astype("float32")
    # A skip of another size (a grid that does not halve evenly): resized first.
    for skip in (rng.normal(size=(2, 4, 6, WIDTH)).astype("float32"), rng.normal(size=(2, 3, 5, WIDTH)).astype("float32"), None):
        with torch.no_grad():
            expected = reference(_nchw(fused), None if skip is None else _nchw(skip))
        layer = DPTFusionBlock(use_batch_norm=use_batch_norm)
        layer.build(fused.shape)
        convert.load_fusion(layer, _strip(reference.state_dict(), "fusion"), "fusion")
        got = layer(fused, skip)
        assert max_abs_diff(got, _nhwc(expected)) <= TOLERANCE


def _strip(state_dict, prefix):
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}


def test_depth_head_matches_transformers():
    for add_projection in (False, True):
        config = _config(fusion_hidden_size=256 if add_projection else WIDTH, add_projection=add_projection)
        # Width 256 (transformers hard-codes it for the projection): smaller
        # weights keep the outputs O(1), so that 1e-4 is a float32 tolerance.
        reference = _randomize(modeling_dpt.DPTDepthEstimationHead(config), std=0.05 if add_projection else 0.3)
        channels = config.fusion_hidden_size
        x = np.random.default_rng(2).normal(size=(2, 3, 5, channels)).astype("float32")
        with torch.no_grad():
            expected = reference([_nchw(x)])
        layer = DPTDepthHead(add_projection=add_projection)
        layer.build(x.shape)
        convert.load_depth_head(layer, _strip(reference.state_dict(), "head"))
        got = layer(x)
        assert tuple(got.shape) == (2, 6, 10)
        assert max_abs_diff(got, expected) <= TOLERANCE


@pytest.mark.parametrize("auxiliary", [False, True])
def test_segmentation_heads_match_transformers(auxiliary):
    config = _config()
    module = modeling_dpt.DPTAuxiliaryHead if auxiliary else modeling_dpt.DPTSemanticSegmentationHead
    reference = _randomize(module(config))
    x = np.random.default_rng(3).normal(size=(2, 3, 5, WIDTH)).astype("float32")
    with torch.no_grad():
        expected = reference(_nchw(x) if auxiliary else [_nchw(x)])
    layer = DPTSegmentationHead(5, upsample=not auxiliary)
    layer.build(x.shape)
    prefix = "auxiliary_head" if auxiliary else "head"
    convert.load_segmentation_head(layer, _strip(reference.state_dict(), prefix), prefix)
    got = layer(x, training=False)
    assert max_abs_diff(got, _nhwc(expected)) <= TOLERANCE


def test_configs_round_trip():
    rng = np.random.default_rng(4)
    check_config_round_trip(DPTResidualConvUnit(use_batch_norm=True), rng.normal(size=(1, 3, 5, 4)).astype("float32"))
    check_config_round_trip(DPTFusionBlock(), rng.normal(size=(1, 3, 5, 4)).astype("float32"))
    check_config_round_trip(DPTDepthHead(), rng.normal(size=(1, 3, 5, 4)).astype("float32"))
    check_config_round_trip(DPTSegmentationHead(7, upsample=False), rng.normal(size=(1, 3, 5, 4)).astype("float32"))
    check_config_round_trip(DPTReassemble(6, 0.5, (3, 4), readout="project"), rng.normal(size=(1, 13, 12)).astype("float32"))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: DPTReassemble(8, 3, (2, 2)), "factor must be one of"),
        (lambda: DPTReassemble(8, 2, (2, 2), readout="cls"), "readout must be one of"),
        (lambda: DPTReassemble(0, 2, (2, 2)), "filters"),
        (lambda: DPTSegmentationHead(0), "num_classes"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_wrong_grid_is_named():
    layer = DPTReassemble(6, 1, (3, 5))
    with pytest.raises(ValueError, match=r"3x5 grid \(16 tokens\)"):
        layer(np.zeros((1, 13, 12), "float32"))
