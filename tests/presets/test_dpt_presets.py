"""DPT presets and checkpoints: the original isl-org/DPT key layout and
transformers' ports convert to the same model as transformers' DPT (random
weights, odd tiny sizes); the release tables fetch, check and cache through
`file://` mirrors; other input sizes resize the position embeddings as the
sources do; `predict_depth`/`predict_segmentation` take raw images of any size.

The original layout is written by renaming a random transformers model's
tensors into the names of the released `.pt` files (`pretrained.model.*`,
`pretrained.act_postprocess{k}.*`, `scratch.layer{k}_rn`,
`scratch.refinenet{k}.*`, `scratch.output_conv.*`, `auxlayer.*`), with the
fused timm `qkv` and timm's unused ImageNet classifier.
"""

import hashlib
import os
import re

import keras
import numpy as np
import pytest

from keras_vit import DPTDepthEstimator
from keras_vit import DPTImageSegmenter
from keras_vit import list_presets
from keras_vit.presets import dpt_presets
from reference_models import assert_segmenter_equal
from reference_models import dpt_config
from reference_models import images
from reference_models import max_abs_diff
from reference_models import randomize_module

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4


def _config(**kwargs):
    # 12 blocks: the original code's ViT-B hooks (2, 5, 8, 11) are fixed.
    args = dict(
        num_hidden_layers=12, image_size=32, backbone_out_indices=[2, 5, 8, 11], layer_norm_eps=1e-6,
    )
    return dpt_config(**{**args, **kwargs})


def _hybrid_config(**kwargs):
    return _config(
        is_hybrid=True, image_size=64, patch_size=16, neck_hidden_sizes=[256, 512, 12, 12],
        reassemble_factors=[1, 1, 1, 0.5], backbone_featmap_shape=[1, 1024, 4, 4],
        backbone_config=dict(
            model_type="bit", global_padding="same", layer_type="bottleneck", depths=[1, 2, 1],
            out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True,
        ),
        **kwargs,
    )


def _reference(cls, config, seed=0):
    return randomize_module(cls(config), seed, std=0.1).eval()


_BLOCK = {
    "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
    "layernorm_before": "norm1", "layernorm_after": "norm2",
}


def original_state(hf_state):
    """A transformers DPT state dict in the original release's names."""
    from keras_vit.conversion.dpt import _BIT
    from keras_vit.conversion.dpt import _bit_to_timm

    state, qkv = {}, {}
    rng = np.random.default_rng(7)
    for key, value in hf_state.items():
        value = value.detach().numpy().copy()
        if key.endswith("num_batches_tracked") and "neck" not in key and "head" not in key:
            continue
        match = re.match(r"dpt\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", key)
        if match:
            block, name, kind = match.groups()
            part = re.match(r"attention\.attention\.(query|key|value)$", name)
            if part:
                qkv.setdefault((block, kind), {})[part.group(1)] = value
            else:
                state[f"pretrained.model.blocks.{block}.{_BLOCK[name]}.{kind}"] = value
            continue
        if key.startswith(_BIT):
            state["pretrained.model." + _bit_to_timm(key)] = value
            continue
        fixed = {
            "dpt.embeddings.cls_token": "pretrained.model.cls_token",
            "dpt.embeddings.position_embeddings": "pretrained.model.pos_embed",
        }
        if key in fixed:
            state[fixed[key]] = value
            continue
        for pattern, repl in (
            (r"dpt\.embeddings\.(patch_embeddings\.)?projection\.", "pretrained.model.patch_embed.proj."),
            (r"dpt\.layernorm\.", "pretrained.model.norm."),
            (r"neck\.reassemble_stage\.readout_projects\.(\d)\.0\.",
             lambda m: f"pretrained.act_postprocess{int(m.group(1)) + 1}.0.project.0."),
            (r"neck\.reassemble_stage\.layers\.(\d)\.projection\.",
             lambda m: f"pretrained.act_postprocess{int(m.group(1)) + 1}.3."),
            (r"neck\.reassemble_stage\.layers\.(\d)\.resize\.",
             lambda m: f"pretrained.act_postprocess{int(m.group(1)) + 1}.4."),
            (r"neck\.convs\.(\d)\.", lambda m: f"scratch.layer{int(m.group(1)) + 1}_rn."),
            (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer(\d)\.convolution(\d)\.",
             lambda m: f"scratch.refinenet{4 - int(m.group(1))}.resConfUnit{m.group(2)}.conv{m.group(3)}."),
            (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer(\d)\.batch_norm(\d)\.",
             lambda m: f"scratch.refinenet{4 - int(m.group(1))}.resConfUnit{m.group(2)}.bn{m.group(3)}."),
            (r"neck\.fusion_stage\.layers\.(\d)\.projection\.", lambda m: f"scratch.refinenet{4 - int(m.group(1))}.out_conv."),
            (r"head\.head\.", "scratch.output_conv."),
            (r"auxiliary_head\.head\.", "auxlayer."),
        ):
            renamed, count = re.subn("^" + pattern, repl, key)
            if count:
                state[renamed] = value
                break
        else:
            raise AssertionError(f"unmapped transformers key {key}")
    for (block, kind), parts in qkv.items():
        state[f"pretrained.model.blocks.{block}.attn.qkv.{kind}"] = np.concatenate(
            [parts["query"], parts["key"], parts["value"]]
        )
    hidden = hf_state["dpt.layernorm.weight"].shape[0]
    # timm's ImageNet classifier, present in the releases and unused by DPT.
    state["pretrained.model.head.weight"] = rng.normal(size=(1000, hidden)).astype("float32")
    state["pretrained.model.head.bias"] = np.zeros(1000, "float32")
    return state


def _save_original(reference, path):
    torch.save({k: torch.from_numpy(v) for k, v in original_state(reference.state_dict()).items()}, path)
    return str(path)


def _depth(reference, x):
    with torch.no_grad():
        return reference(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).predicted_depth


def test_original_layout_depth_equals_transformers(tmp_path):
    reference = _reference(transformers.DPTForDepthEstimation, _config())
    path = _save_original(reference, tmp_path / "dpt_tiny-midas.pt")
    model = DPTDepthEstimator.from_preset(path, num_heads=3)
    assert model.taps == ["block_2", "block_5", "block_8", "block_11"]
    assert model.backbone.layer_norm_epsilon == 1e-6  # the original timm backbone's
    x, _ = images((2, 32, 32, 3), seed=4)
    assert max_abs_diff(model(x), _depth(reference, x)) <= TOLERANCE
    # The same random weights through transformers' own layout give the same model.
    ported = DPTDepthEstimator(model.backbone.__class__.from_config(model.backbone.get_config()), **{
        k: getattr(model, k) for k in ("taps", "neck_widths", "reassemble_factors", "readout", "fusion_width")
    })
    from keras_vit.conversion.dpt import load_transformers_dpt

    load_transformers_dpt(ported, reference.state_dict())
    assert max_abs_diff(ported(x), model(x)) <= 1e-6


def test_original_layout_hybrid_segmentation_with_auxiliary_head(tmp_path):
    config = _hybrid_config(use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True)
    reference = _reference(transformers.DPTForSemanticSegmentation, config, seed=1)
    path = _save_original(reference, tmp_path / "dpt_tiny-ade20k.pt")
    model = DPTImageSegmenter.from_preset(path, num_heads=3)
    assert model.taps == ["stage_0", "stage_1", "block_8", "block_11"] and model.num_classes == 5
    x, x_torch = images((1, 64, 64, 3), seed=5)
    assert_segmenter_equal(model, reference, x, x_torch, TOLERANCE)
    with pytest.raises(ValueError, match="DPTImageSegmenter"):
        DPTDepthEstimator.from_preset(path, num_heads=3)


def test_original_layout_metric_release_and_broken_files(tmp_path):
    reference = _reference(transformers.DPTForDepthEstimation, _config())
    path = _save_original(reference, tmp_path / "dpt_hybrid_kitti-tiny.pt")
    model = DPTDepthEstimator.from_preset(path, num_heads=3)
    assert (model.depth_scale, model.depth_shift) == (6.016e-5, 0.00579)
    x, _ = images((1, 32, 32, 3), seed=6)
    relative = _depth(reference, x).numpy()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)), 1.0 / np.maximum(6.016e-5 * relative + 0.00579, 1e-8), rtol=1e-4
    )
    state = original_state(reference.state_dict())
    del state["scratch.refinenet2.out_conv.weight"]
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "partial-midas.pt")
    with pytest.raises(KeyError, match="fusion_stage.layers.2.projection.weight"):
        DPTDepthEstimator.from_preset(str(tmp_path / "partial-midas.pt"), num_heads=3)
    state = original_state(reference.state_dict())
    state["scratch.extra.weight"] = np.zeros(3, "float32")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "extra-midas.pt")
    with pytest.raises(ValueError, match="scratch.extra.weight"):
        DPTDepthEstimator.from_preset(str(tmp_path / "extra-midas.pt"), num_heads=3)


# ------------------------------------------------------------------ release tables


@pytest.fixture
def tiny_tables(monkeypatch):
    """The ViT-L table shrunk to a tiny model, so the whole fetch path runs fast."""
    monkeypatch.setitem(dpt_presets._LARGE, "patch_size", (4, 4))
    for key, value in {"hidden_dim": 12, "num_layers": 4, "num_heads": 3, "mlp_dim": 15}.items():
        monkeypatch.setitem(dpt_presets._LARGE, key, value)
    monkeypatch.setitem(dpt_presets._NECK, "large", {
        "taps": ["block_0", "block_1", "block_2", "block_3"], "neck_widths": [6, 8, 10, 12],
        "reassemble_factors": [4, 2, 1, 0.5], "fusion_width": 10,
    })
    for name, size in (("dpt_large", 32), ("dpt_large_ade", 48)):
        monkeypatch.setitem(dpt_presets.DPT_PRESETS, name, {**dpt_presets.DPT_PRESETS[name], "image_size": size})
    return monkeypatch


def _tiny_config(**kwargs):
    return _config(num_hidden_layers=4, backbone_out_indices=[0, 1, 2, 3], **kwargs)


@pytest.mark.one_backend("torch", "the tables and their configs do not depend on the backend")
def test_tables_and_errors():
    assert {"dpt_large", "dpt_hybrid", "dpt_hybrid_kitti", "dpt_hybrid_nyu", "dpt_large_ade", "dpt_hybrid_ade"} <= set(
        list_presets()
    )
    assert set(DPTDepthEstimator.presets) == {"dpt_large", "dpt_hybrid", "dpt_hybrid_kitti", "dpt_hybrid_nyu"}
    for entry in dpt_presets.DPT_PRESETS.values():
        assert re.fullmatch(r"[a-z_0-9-]+-[0-9a-f]{8}\.pt", entry["original"]), entry["original"]
    model = DPTImageSegmenter.from_preset("dpt_hybrid_ade", load_weights=False)
    assert model.backbone.image_shape == (480, 480, 3) and model.num_classes == 150 and model.use_batch_norm
    with pytest.raises(ValueError, match="no port of 'dpt_hybrid_nyu'"):
        DPTDepthEstimator.from_preset("dpt_hybrid_nyu", source="transformers")
    with pytest.raises(ValueError, match="DPTImageSegmenter"):
        DPTDepthEstimator.from_preset("dpt_large_ade", load_weights=False)
    with pytest.raises(ValueError, match=r"Unknown argument\(s\) \['num_clases'\]"):
        DPTImageSegmenter.from_preset("dpt_large_ade", load_weights=False, num_clases=3)


@pytest.mark.parametrize("source", ["original", "transformers"])
def test_release_fetch_check_convert_and_cache(source, tiny_tables, tmp_path):
    """`dpt_large` and `dpt_large_ade` (tiny tables) from a mirror of each
    source: hash prefix checked, converted, cached; the ADE release runs at
    its working size (48 here, 480 for real) with the position embeddings
    resized as transformers resizes them, equal to transformers fed that size."""
    monkeypatch = tiny_tables
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    depth_ref = _reference(transformers.DPTForDepthEstimation, _tiny_config(), seed=2)
    seg_ref = _reference(
        transformers.DPTForSemanticSegmentation,
        _tiny_config(num_labels=150, use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True),
        seed=3,
    )
    if source == "original":
        mirror = tmp_path / "mirror"
        mirror.mkdir()
        for name, reference in (("dpt_large", depth_ref), ("dpt_large_ade", seg_ref)):
            staging = _save_original(reference, mirror / "staging.pt")
            digest = hashlib.sha256(open(staging, "rb").read()).hexdigest()[:8]
            stem = dpt_presets.DPT_PRESETS[name]["original"].rsplit("-", 1)[0]
            os.replace(staging, mirror / f"{stem}-{digest}.pt")
            monkeypatch.setitem(
                dpt_presets.DPT_PRESETS, name, {**dpt_presets.DPT_PRESETS[name], "original": f"{stem}-{digest}.pt"}
            )
        monkeypatch.setenv("KERAS_VIT_DPT_ENDPOINT", mirror.as_uri())
    else:
        hub = tmp_path / "hub"
        for name, reference in (("dpt_large", depth_ref), ("dpt_large_ade", seg_ref)):
            reference.config.layer_norm_eps = 1e-12
            reference.save_pretrained(hub / dpt_presets.DPT_PRESETS[name]["transformers"] / "resolve" / "main")
        monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", hub.as_uri())
    epsilon = 1e-6 if source == "original" else 1e-12
    depth = DPTDepthEstimator.from_preset("dpt_large", source=source)
    assert depth.backbone.layer_norm_epsilon == epsilon
    x, _ = images((1, 32, 32, 3), seed=8)
    for ref in (depth_ref, seg_ref):
        for module in ref.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = epsilon
    assert max_abs_diff(depth(x), _depth(depth_ref, x)) <= TOLERANCE
    segmenter = DPTImageSegmenter.from_preset("dpt_large_ade", source=source)
    assert segmenter.backbone.image_shape == (48, 48, 3)
    x48, x48_torch = images((1, 48, 48, 3), seed=9)
    with torch.no_grad():
        expected = seg_ref(pixel_values=x48_torch).logits
    assert max_abs_diff(segmenter(x48, training=False)["logits"], expected.permute(0, 2, 3, 1)) <= TOLERANCE
    # Cached: served with the sources gone.
    monkeypatch.setenv("KERAS_VIT_DPT_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", "http://127.0.0.1:9")
    again = DPTDepthEstimator.from_preset("dpt_large", source=source)
    assert max_abs_diff(again(x), depth(x)) == 0.0
    # Another size on request, resized as the source does it.
    at40 = DPTDepthEstimator.from_preset("dpt_large", source=source, image_size=40)
    x40, _ = images((1, 40, 40, 3), seed=10)
    assert max_abs_diff(at40(x40), _depth(depth_ref, x40)) <= TOLERANCE


def test_any_size_and_raw_image_prediction():
    """`at_image_size` resizes the position embeddings as torch's bilinear
    interpolate (align_corners=False) does; `predict_depth` and
    `predict_segmentation` follow the original scripts: aspect-kept working
    size (multiple of 32), bicubic in, normalise, bicubic back to the input size."""
    import torch.nn.functional as F

    from keras_vit import ViTBackbone
    from keras_vit import ViTImagePreprocessor

    backbone = ViTBackbone(
        image_shape=(32, 32, 3), patch_size=4, hidden_dim=12, num_layers=4, num_heads=3, mlp_dim=15,
        layer_norm_epsilon=1e-6, gelu_approximate=False,
    )
    arrangement = dict(taps=["block_0", "block_1", "block_2", "block_3"], neck_widths=[6, 8, 10, 12], fusion_width=10)
    model = DPTDepthEstimator(backbone, **arrangement, preprocessor=ViTImagePreprocessor(32))
    wide = model.at_image_size((32, 64))
    table = keras.ops.convert_to_numpy(model.backbone.get_layer("position_embedding").embedding)
    grid = torch.from_numpy(table[:, 1:].reshape(1, 8, 8, 12).transpose(0, 3, 1, 2).copy())
    expected = F.interpolate(grid, size=(8, 16), mode="bilinear", align_corners=False)
    got = keras.ops.convert_to_numpy(wide.backbone.get_layer("position_embedding").embedding)[:, 1:]
    assert max_abs_diff(got, expected.permute(0, 2, 3, 1).reshape(1, 128, 12)) <= 1e-6
    assert model.working_size(30, 70) == (32, 64)  # height fits best: 30 -> 32, 70 * 32/30 -> 64

    rng = np.random.default_rng(11)
    image = rng.uniform(0, 255, (30, 70, 3)).astype("float32")
    depth = model.predict_depth(image)
    assert depth.shape == (30, 70)
    resized = F.interpolate(torch.from_numpy(image.transpose(2, 0, 1)[None].copy()), size=(32, 64), mode="bicubic",
                            align_corners=False)
    normalised = (resized.permute(0, 2, 3, 1).numpy() / 255.0 - 0.5) / 0.5
    raw = keras.ops.convert_to_numpy(wide(normalised))
    back = F.interpolate(torch.from_numpy(raw[:, None]), size=(30, 70), mode="bicubic", align_corners=False)[0, 0]
    assert max_abs_diff(depth, back) <= 1e-4
    # A list of different sizes gives one map per image, at its own size.
    maps = model.predict_depth([image, image[:20, :24]])
    assert [m.shape for m in maps] == [(30, 70), (20, 24)] and max_abs_diff(maps[0], depth) <= 1e-5
    with pytest.raises(ValueError, match=r"images\[0\] must be \(H, W, 3\)"):
        model.predict_depth([image[..., :2]])

    segmenter = DPTImageSegmenter(ViTBackbone.from_config(backbone.get_config()), num_classes=4, **arrangement)
    labels = segmenter.predict_segmentation(image[None] / 127.5 - 1.0)
    assert labels.shape == (1, 30, 70) and labels.dtype == np.int32 and labels.max() < 4
