"""keras_vit's DPT equals transformers' DPTForDepthEstimation and
DPTForSemanticSegmentation (auxiliary head included) with the same random
weights, on odd tiny configs; configs and weights round-trip."""

import gc

import numpy as np
import pytest

from keras_vit import ViTBackbone
from keras_vit.conversion.dpt import load_transformers_dpt
from keras_vit.models.dpt import DPTDepthEstimator
from keras_vit.models.dpt import DPTImageSegmenter
from reference_models import assert_segmenter_equal
from reference_models import dpt_config
from reference_models import images
from reference_models import max_abs_diff
from reference_models import randomize_module

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4


def _randomize(module, seed=0):
    return randomize_module(module, seed, std=0.1)


def _config(**kwargs):
    return dpt_config(**kwargs)


def _backbone(config):
    return ViTBackbone(
        image_shape=(config.image_size, config.image_size, 3), patch_size=config.patch_size,
        hidden_dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        mlp_dim=config.intermediate_size, layer_norm_epsilon=config.layer_norm_eps, gelu_approximate=False,
    )


def _arrangement(config):
    return dict(
        taps=[f"block_{i}" for i in config.backbone_out_indices], neck_widths=config.neck_hidden_sizes,
        reassemble_factors=config.reassemble_factors, readout=config.readout_type,
        fusion_width=config.fusion_hidden_size,
    )


@pytest.mark.parametrize("readout", ["project", "ignore"])  # "add": tests/layers/test_dpt_layers.py
def test_depth_matches_transformers(readout):
    config = _config(readout_type=readout)
    reference = _randomize(transformers.DPTForDepthEstimation(config))
    model = DPTDepthEstimator(_backbone(config), **_arrangement(config))
    load_transformers_dpt(model, reference.state_dict())
    x, x_torch = images((2, 28, 28, 3))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).predicted_depth
    got = model(x)
    # A 7x7 grid does not halve evenly: the fused maps grow 4 -> 8 -> 16 ->
    # 32 -> 64 (each skip resized to them), and the head doubles that.
    assert tuple(got.shape) == tuple(expected.shape) == (2, 128, 128)
    assert max_abs_diff(got, expected) <= TOLERANCE


def test_hybrid_depth_matches_transformers():
    """DPT-Hybrid: a BiT ResNet (transformers' layout) whose first two stages
    go to the neck as they are, then blocks; odd tiny sizes."""
    config = _config(
        is_hybrid=True, image_size=64, patch_size=16, neck_hidden_sizes=[256, 512, 12, 12],
        reassemble_factors=[1, 1, 1, 0.5], backbone_featmap_shape=[1, 1024, 4, 4],
        backbone_config=dict(
            model_type="bit", global_padding="same", layer_type="bottleneck", depths=[1, 2, 1],
            out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True,
        ),
    )
    reference = _randomize(transformers.DPTForDepthEstimation(config))
    backbone = ViTBackbone(
        image_shape=(64, 64, 3), patch_size=1, hidden_dim=12, num_layers=4, num_heads=3, mlp_dim=15,
        layer_norm_epsilon=1e-12, gelu_approximate=False, hybrid_layers=(1, 2, 1),
    )
    model = DPTDepthEstimator(
        backbone, taps=["stage_0", "stage_1", "block_2", "block_3"], neck_widths=[256, 512, 12, 12],
        reassemble_factors=[1, 1, 1, 0.5], fusion_width=10,
    )
    load_transformers_dpt(model, reference.state_dict())
    x, x_torch = images((2, 64, 64, 3), seed=3)
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).predicted_depth
    got = model(x)
    assert tuple(got.shape) == tuple(expected.shape)
    assert max_abs_diff(got, expected) <= TOLERANCE


def test_segmentation_with_auxiliary_head_matches_transformers():
    config = _config(use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True)
    reference = _randomize(transformers.DPTForSemanticSegmentation(config))
    model = DPTImageSegmenter(
        _backbone(config), num_classes=5, use_batch_norm=True, **_arrangement(config)
    )
    load_transformers_dpt(model, reference.state_dict())
    x, x_torch = images((2, 28, 28, 3), seed=1)
    assert_segmenter_equal(model, reference, x, x_torch, TOLERANCE)


def test_save_and_load_round_trip(tmp_path):
    config = _config()
    model = DPTDepthEstimator(_backbone(config), **_arrangement(config), depth_scale=0.5, depth_shift=0.1)
    x, _ = images((1, 28, 28, 3), seed=2)
    expected = model(x)
    model.save_to_preset(tmp_path / "dpt")
    restored = DPTDepthEstimator.from_preset(str(tmp_path / "dpt"))
    assert isinstance(restored, DPTDepthEstimator)
    for key in ("taps", "neck_widths", "reassemble_factors", "readout", "fusion_width", "depth_scale", "depth_shift"):
        assert restored.get_config()[key] == model.get_config()[key], key
    assert max_abs_diff(restored(x), expected) <= 1e-6


def test_bad_taps_are_named():
    config = _config()
    with pytest.raises(ValueError, match=r"taps \['block_9'\] are not features"):
        DPTDepthEstimator(_backbone(config), **{**_arrangement(config), "taps": ["block_0", "block_1", "block_2", "block_9"]})
    with pytest.raises(ValueError, match="same \\(non-zero\\) length"):
        DPTDepthEstimator(_backbone(config), **{**_arrangement(config), "neck_widths": [6, 8]})
    with pytest.raises(TypeError, match=r"\['taps_'\]"):
        DPTDepthEstimator(_backbone(config), taps_=("block_0",))


def test_default_compile_trains_and_reports_each_term():
    """DPT's default losses in `fit`: the segmenter's cross-entropy on both
    heads (aux at 0.4; labels given once) with mean IoU and pixel accuracy;
    the depth model's SSI loss with its two terms."""
    config = _config()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 28, 28, 3)).astype("float32")
    segmenter = DPTImageSegmenter(_backbone(config), num_classes=5, use_batch_norm=True, **_arrangement(config))
    segmenter.compile(optimizer="sgd")
    labels = rng.integers(0, 5, (4, 128, 128)).astype("int32")
    labels[:, :10] = 255
    logs = segmenter.fit(x, labels, batch_size=2, epochs=1, verbose=0).history
    assert {"loss", "logits_loss", "aux_logits_loss", "logits_mean_iou", "logits_pixel_accuracy"} <= set(logs), logs
    np.testing.assert_allclose(
        logs["loss"][0], logs["logits_loss"][0] + 0.4 * logs["aux_logits_loss"][0], rtol=1e-3
    )
    depth = DPTDepthEstimator(_backbone(config), **_arrangement(config))
    depth.compile(optimizer="sgd")
    disparity = rng.uniform(0.1, 1.0, (4, 128, 128)).astype("float32")
    logs = depth.fit(x, disparity, batch_size=2, epochs=1, verbose=0).history
    assert {"loss", "ssi_data", "ssi_gradient"} <= set(logs), logs
    assert np.isfinite(logs["loss"][0])


@pytest.mark.slow
@pytest.mark.one_backend(
    "torch",
    "the full-size layout and conversion do not depend on the backend (each backend's numerics are checked on "
    "the tiny, hybrid and projection configs above)",
)
def test_full_dpt_large_depth_matches_transformers(tmp_path, memory_heavy):
    """A DPT-Large-sized depth model (ViT-L/16, taps 5/11/17/23, neck
    256/512/1024/1024, fusion 256; 343M parameters) with random weights,
    written by transformers and read through the public loading path
    (`from_preset` on the checkpoint file), run at 128x128 (both sides resize
    the 24x24 position embeddings the same way)."""
    config = transformers.DPTConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024], image_size=384,
    )
    reference = randomize_module(transformers.DPTForDepthEstimation(config), seed=2, std=0.02).eval()
    # The neck and head at unit gain (std 1 / sqrt(fan-in)) and the last bias at 1: with std 0.02
    # there, the final ReLU passes 0.05% of the pixels and the output is ~0, which any model matches.
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in list(reference.neck.parameters()) + list(reference.head.parameters()):
            scale = 1 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.1
            p.copy_(scale * torch.randn(p.shape, generator=generator))
        reference.head.head[4].bias.fill_(1.0)
    reference.save_pretrained(tmp_path)
    parameters = sum(p.numel() for p in reference.parameters())
    x, x_torch = images((1, 128, 128, 3), seed=4)
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).predicted_depth
    assert float((expected > 0).float().mean()) > 0.2 and float(expected.std()) > 0.1
    # The reference is done: free its 1.4 GB before the Keras model is built from the file
    # (this test set the suite's peak worker memory, 11.4 GiB on the JAX tier).
    del reference
    gc.collect()
    model = DPTDepthEstimator.from_preset(str(tmp_path / "model.safetensors"), image_size=128)
    # The same parameters (the deepest fusion block's unused residual unit included on both
    # sides), but position embeddings for an 8 x 8 grid instead of the stored 24 x 24.
    assert model.count_params() == parameters - (24 * 24 - 8 * 8) * 1024 and 343e6 < parameters < 344e6
    assert max_abs_diff(model(x), expected) <= TOLERANCE
