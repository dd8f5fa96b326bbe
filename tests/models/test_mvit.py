"""MViTv2 against timm (random weights, odd tiny configs), through the
conversion code and file layouts of the releases; the layers alone; the
multi-scale contract; training, saving, DETR on it."""

import functools
import json

import keras
import numpy as np
import pytest

from keras_vit import DETR
from keras_vit import MViT
from keras_vit import MViTBackbone
from keras_vit.layers.mvit_block import MViTAttention
from keras_vit.layers.mvit_block import MViTBlock
from keras_vit.layers.mvit_block import relative_distances
from layer_checks import check_config_round_trip
from reference_models import images
from reference_models import max_abs_diff
from reference_models import mvit_official_layout
from reference_models import randomize

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
mvitv2 = pytest.importorskip("timm.models.mvitv2")

TOLERANCE = 1e-4


def _timm(expand, seed=0):
    """64x64 input (16, 8, 4 tokens a side); widths 15, 30, 45 (not doubling)
    with 5, 5 and 3 heads (T/S/B layout), or L's layout (the width changes
    in each stage's last MLP) with 10, 20, 40 and 1, 2, 4 heads."""
    if expand:
        cfg = mvitv2.MultiScaleVitCfg(depths=(1, 2, 2), embed_dim=(15, 30, 45), num_heads=(5, 5, 3))
    else:
        cfg = mvitv2.MultiScaleVitCfg(depths=(2, 2, 1), embed_dim=10, num_heads=1, expand_attn=False)
    return randomize(mvitv2.MultiScaleVit(cfg, img_size=(64, 64), num_classes=7), seed=seed)


def _state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module", params=[True, False], ids=["expand", "large_layout"])
def pair(request, tmp_path_factory):
    reference = _timm(request.param)
    path = tmp_path_factory.mktemp("mvit") / "model.safetensors"
    safetensors_numpy.save_file(_state(reference), str(path))
    return reference, MViT.from_preset(str(path)), request.param


def test_classifier_and_stages_match_timm(pair):
    reference, model, expand = pair
    assert model.backbone.image_shape == (64, 64, 3) and model.backbone.expand_attention == expand
    x, x_torch = images((2, 64, 64, 3))
    with torch.no_grad():
        expected = reference(x_torch)
        stages = reference.forward_intermediates(x_torch, intermediates_only=True)
    assert max_abs_diff(model(x), expected) <= TOLERANCE
    features = model.backbone.pyramid_extractor()(x)
    for level, stage in zip(("P2", "P3", "P4"), stages):
        assert max_abs_diff(features[level], stage.permute(0, 2, 3, 1)) <= TOLERANCE


def test_official_pyth_layout_loads_the_same(pair, tmp_path):
    """`{"model_state": ...}` with flat `blocks.N` (the `.pyth` files,
    torch pickles read with weights_only), stages found from the widths."""
    reference, model, expand = pair
    path = tmp_path / "MViTv2_T_in1k.pyth"
    depths = [len(s.blocks) for s in reference.stages]
    state = mvit_official_layout(_state(reference), depths)
    from keras_vit.conversion.mvit import mvit_config_from_state_dict

    official_config = mvit_config_from_state_dict({k: v.numpy() for k, v in state.items()})
    assert official_config["backbone"] == mvit_config_from_state_dict(_state(reference))["backbone"]
    if expand:
        return  # the stage boundaries, read from the widths, are the timm file's; the loading is L's below
    torch.save({"model_state": state, "epoch": 3, "cfg": "MODEL: ..."}, path)
    official = MViT.from_preset(str(path))
    assert official.backbone.depths == tuple(depths)
    x = images((1, 64, 64, 3), seed=1)[0]
    assert max_abs_diff(official(x), model(x)) == 0.0


def test_a_timm_folder_whose_layout_is_not_its_name(tmp_path):
    """timm's save_for_hf writes the architecture name, not the stage layout:
    the tensors decide (a "mvitv2_tiny" folder holding another layout)."""
    reference = _timm(True, seed=2)
    from timm.models._hub import save_for_hf

    reference.pretrained_cfg = {"architecture": "mvitv2_tiny", "input_size": (3, 64, 64)}
    save_for_hf(reference, tmp_path, safe_serialization=True)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "mvitv2_tiny"
    model = MViT.from_preset(str(tmp_path / "model.safetensors"))
    assert model.backbone.depths == (1, 2, 2) and model.backbone.stage_widths == (15, 30, 45)
    assert model.backbone.stage_heads == (5, 5, 3)
    x, x_torch = images((1, 64, 64, 3), seed=3)
    with torch.no_grad():
        assert max_abs_diff(model(x), reference(x_torch)) <= TOLERANCE


def test_uninferable_layouts_say_what(tmp_path):
    from keras_vit.conversion.mvit import mvit_config_from_state_dict

    state = _state(_timm(True))
    key = "stages.1.blocks.0.attn.rel_pos_h"
    state[key] = np.zeros((15, 7), "float32")  # a head width that does not divide the attention width 30
    with pytest.raises(ValueError, match="Cannot infer the head count of stages.1.blocks.0"):
        mvit_config_from_state_dict(state)


def test_relative_distances_are_the_references():
    """`cal_rel_pos_type`'s index, q pooled more than k and the reverse."""
    for q, k in ((4, 8), (8, 2), (5, 5)):
        q_ratio, k_ratio = max(k / q, 1.0), max(q / k, 1.0)
        expected = (torch.arange(q).unsqueeze(-1) * q_ratio - torch.arange(k).unsqueeze(0) * k_ratio) + (k - 1) * k_ratio
        np.testing.assert_array_equal(relative_distances(q, k), expected.long().numpy())


def _load_attention(layer, reference):
    layer.qkv.set_weights([reference.qkv.weight.detach().numpy().T, reference.qkv.bias.detach().numpy()])
    layer.proj.set_weights([reference.proj.weight.detach().numpy().T, reference.proj.bias.detach().numpy()])
    for part in "qkv":
        getattr(layer, f"pool_{part}").set_weights([getattr(reference, f"pool_{part}").weight.detach().numpy().transpose(2, 3, 0, 1)])
        norm = getattr(reference, f"norm_{part}")
        getattr(layer, f"norm_{part}").set_weights([norm.weight.detach().numpy(), norm.bias.detach().numpy()])
    layer.rel_pos_h.assign(reference.rel_pos_h.detach().numpy())
    layer.rel_pos_w.assign(reference.rel_pos_w.detach().numpy())


@pytest.mark.parametrize("q_stride, kv_stride", [(2, 4), (1, 2)])
def test_pooling_attention_matches_timm(q_stride, kv_stride):
    """Pooled Q (stride 2) against K/V pooled 4: tables of unequal sizes,
    the residual pooling connection; 3 heads of width 7."""
    reference = randomize(mvitv2.MultiScaleAttention(
        14, 21, (8, 8), num_heads=3, kernel_q=(3, 3), kernel_kv=(3, 3), stride_q=(q_stride,) * 2,
        stride_kv=(kv_stride,) * 2, has_cls_token=False, norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
    ), seed=4)
    layer = MViTAttention(14, 21, 3, q_stride, kv_stride)
    x = np.random.default_rng(5).normal(size=(2, 8, 8, 14)).astype("float32")
    layer(x)
    _load_attention(layer, reference)
    with torch.no_grad():
        expected, size = reference(torch.from_numpy(x.reshape(2, 64, 14)), [8, 8])
    out = layer(x)
    assert tuple(out.shape[1:3]) == tuple(size)
    assert max_abs_diff(out, expected.reshape(2, *size, 21)) <= TOLERANCE
    check_config_round_trip(layer, x)


def test_block_with_stride_and_projection_matches_timm():
    reference = randomize(mvitv2.MultiScaleBlock(
        6, 12, 2, (8, 8), kernel_q=(3, 3), kernel_kv=(3, 3), stride_q=(2, 2), stride_kv=(2, 2), has_cls_token=False,
        expand_attn=True, norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
    ), seed=6)
    block = MViTBlock(6, 12, 2, q_stride=2, kv_stride=2)
    x = np.random.default_rng(7).normal(size=(2, 8, 8, 6)).astype("float32")
    block(x)
    from keras_vit.conversion.mvit import _block

    state = {f"b.{k}": v.detach().numpy() for k, v in reference.state_dict().items()}
    _block(block, state, "b", "timm")
    with torch.no_grad():
        expected, size = reference(torch.from_numpy(x.reshape(2, 64, 6)), [8, 8])
    assert max_abs_diff(block(x), expected.reshape(2, *size, 12)) <= TOLERANCE
    check_config_round_trip(block, x)


def test_fit_save_pyramid_and_detr():
    backbone = MViTBackbone(image_shape=(32, 32, 3), hidden_dim=6, depths=(1, 1, 1), num_heads=(1, 2, 3))
    assert {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()} == {
        "P2": (None, 8, 8, 6), "P3": (None, 4, 4, 12), "P4": (None, 2, 2, 24),
    }
    model = MViT(backbone, num_classes=3)
    model.compile()
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    history = model.fit(x, np.array([0, 1, 2, 1]), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    detr = DETR(backbone, num_classes=3, num_queries=4, hidden_dim=8, num_heads=2, encoder_layers=1, decoder_layers=1,
                ffn_dim=8, feature_level="P4")
    assert detr._feature_model.output.shape[1:] == (2, 2, 24)  # the third stage (DETR on Swin trains in test_swin)
    with pytest.raises(ValueError, match="square with a side that is a multiple of 16"):
        MViTBackbone(image_shape=(32, 48, 3), depths=(1, 1, 1))
    with pytest.raises(ValueError, match="num_heads .* must divide"):
        MViTBackbone(image_shape=(32, 32, 3), hidden_dim=6, depths=(1, 1), num_heads=(4, 4))


def test_bfloat16_is_finite_and_close(pair):
    _, model, expand = pair
    if not expand:
        pytest.skip("one layout is enough: the same layers in another order")
    config = model.get_config()
    config["dtype"] = config["backbone"]["config"]["dtype"] = "mixed_bfloat16"
    half = MViT.from_config(config)
    half.set_weights(model.get_weights())
    x = images((2, 64, 64, 3), seed=8)[0]
    if keras.backend.backend() == "jax":
        pytest.skip("JAX compiles the whole bfloat16 graph anew (25 s on 2 cores); the casts are keras_vit code, "
                    "the same on every backend: the TensorFlow and torch tiers check them")
    expected = model.predict(x, verbose=0)
    got = np.asarray(half.predict(x, verbose=0), "float32")
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max()
