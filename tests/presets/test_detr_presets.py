"""DETR.from_preset on checkpoints written in the original `.pth` and transformers formats.

Random transformers models stand in for the releases; the original format is
written by renaming their tensors (fused attention, torchvision backbone
names). Downloads go to local `file://` mirrors, so fetch, hash check,
conversion and cache all run without a network.
"""

import hashlib
import os

import numpy as np
import pytest

from detr_reference import keras_detr
from detr_reference import original_state
from detr_reference import padded_batch
from detr_reference import pixel_values
from detr_reference import reference_detr
from detr_reference import state_of
from keras_vit import DETR
from keras_vit import list_presets
from keras_vit.presets import detr_presets
from reference_models import max_abs_diff

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    return reference_detr()


def _expected(reference, images, mask):
    with torch.no_grad():
        return reference(pixel_values=pixel_values(images, mask), pixel_mask=torch.from_numpy(mask.astype("int64")))


def _check(model, reference):
    images, mask = padded_batch()
    ours = model({"images": images, "pixel_mask": mask})
    theirs = _expected(reference, images, mask)
    assert max_abs_diff(ours["logits"], theirs.logits) <= TOLERANCE
    assert max_abs_diff(ours["boxes"], theirs.pred_boxes) <= TOLERANCE


def test_original_pth_file(reference, tmp_path):
    path = tmp_path / "detr-tiny.pth"
    state = {k: torch.from_numpy(v) for k, v in original_state(state_of(reference)).items()}
    torch.save({"model": state}, path)
    model = DETR.from_preset(str(path), dilate_last_stage=False)
    assert model.num_heads == 8  # not in the weights; the releases' value
    _check(DETR.from_preset(str(path), num_heads=4), reference)


def test_transformers_save_pretrained_directory_files(reference, tmp_path):
    # save_pretrained writes the hub's 4.x names (conv_encoder, out_proj, top-level fc1/fc2)
    # and a config.json with the head count.
    reference.save_pretrained(tmp_path / "detr")
    model = DETR.from_preset(str(tmp_path / "detr" / "model.safetensors"))
    assert model.num_heads == 4
    _check(model, reference)


def test_hf_scheme(reference, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    reference.save_pretrained(hub / "org" / "detr-tiny" / "resolve" / "main")
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", hub.as_uri())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    _check(DETR.from_preset("hf://org/detr-tiny"), reference)


def test_preset_directory_round_trip_and_new_head(reference, tmp_path):
    model = keras_detr(state_of(reference))
    model.save_to_preset(tmp_path / "preset")
    _check(DETR.from_preset(str(tmp_path / "preset")), reference)
    finetune = DETR.from_preset(str(tmp_path / "preset"), num_classes=2, bounding_box_format="rel_yxyx")
    assert finetune.class_head.kernel.shape[-1] == 3 and finetune.bounding_box_format == "rel_yxyx"
    np.testing.assert_array_equal(
        np.asarray(finetune.query_embeddings.numpy()), np.asarray(model.query_embeddings.numpy())
    )


@pytest.mark.one_backend("torch", "the names and configs do not depend on the backend")
def test_preset_names_and_errors(tmp_path):
    assert list_presets("detr") == ["detr_r101", "detr_r101_dc5", "detr_r50", "detr_r50_dc5"]
    with pytest.raises(ValueError, match="closest match is 'detr_r50'"):
        DETR.from_preset("detr_r5O")
    with pytest.raises(ValueError, match="source must be one of"):
        DETR.from_preset("detr_r50", source="timm")
    model = DETR.from_preset("detr_r50_dc5", load_weights=False, num_queries=5, num_classes=3)
    assert model.backbone.dilate_last_stage and model.num_queries == 5 and model.num_classes == 3


def test_not_a_detr_checkpoint(tmp_path):
    from safetensors.numpy import save_file

    save_file({"patch_embed.proj.weight": np.zeros((2, 3, 4, 4), "float32")}, str(tmp_path / "vit.safetensors"))
    with pytest.raises(ValueError, match="Not a DETR checkpoint"):
        DETR.from_preset(str(tmp_path / "vit.safetensors"))


def _full_reference():
    """The full-size R50 DETR (timm resnet50 backbone, random, no download)."""
    config = transformers.DetrConfig(num_labels=91, use_pretrained_backbone=False, dropout=0.0)
    config._attn_implementation = "eager"
    return reference_detr(config, randomize_weights=False)


@pytest.mark.slow
@pytest.mark.one_backend(
    "tensorflow",
    "download, check, conversion and cache are backend-independent (each backend's DETR numerics are checked "
    "against transformers on the small configs above)",
)
@pytest.mark.parametrize("source", ["original", "transformers"])
def test_detr_r50_preset_from_each_release_format(source, tmp_path, monkeypatch, memory_heavy):
    """The whole detr_r50 path (download, sha256 prefix check, conversion,
    cache) on full-size random checkpoints, equal to transformers."""
    reference = _full_reference()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    if source == "original":
        mirror = tmp_path / "detr_mirror"
        mirror.mkdir()
        staging = mirror / "detr-r50.pth"
        state = {k: torch.from_numpy(v) for k, v in original_state_timm(state_of(reference)).items()}
        torch.save({"model": state}, staging)
        digest = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
        filename = f"detr-r50-{digest}.pth"
        os.replace(staging, mirror / filename)
        monkeypatch.setenv("KERAS_VIT_DETR_ENDPOINT", mirror.as_uri())
        monkeypatch.setitem(detr_presets.DETR_PRESETS, "detr_r50", {**detr_presets.DETR_PRESETS["detr_r50"], "original": filename})
    else:
        hub = tmp_path / "hub"
        reference.save_pretrained(hub / "facebook" / "detr-resnet-50" / "resolve" / "main")
        monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", hub.as_uri())
    model = DETR.from_preset("detr_r50", source=source)
    assert model.count_params() == sum(p.numel() for p in reference.parameters()) + sum(
        b.numel() for n, b in reference.named_buffers() if "backbone" in n
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (1, 256, 320, 3)).astype("float32")
    mask = np.ones((1, 256, 320), bool)
    ours = model({"images": images, "pixel_mask": mask})
    theirs = _expected(reference, images, mask)
    assert max_abs_diff(ours["logits"], theirs.logits) <= TOLERANCE
    assert max_abs_diff(ours["boxes"], theirs.pred_boxes) <= TOLERANCE
    # Cached: the second call reads the converted preset, even with the source gone.
    monkeypatch.setenv("KERAS_VIT_DETR_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", "http://127.0.0.1:9")
    again = DETR.from_preset("detr_r50", source=source)
    assert max_abs_diff(again({"images": images, "pixel_mask": mask})["boxes"], ours["boxes"]) == 0.0


def original_state_timm(hf_state):
    """As `original_state`, for transformers' timm backbone (already torchvision names)."""
    backbone = {k: v for k, v in hf_state.items() if k.startswith("model.backbone.")}
    rest = original_state({k: v for k, v in hf_state.items() if k not in backbone})
    rest.update({"backbone.0.body." + k.split(".", 3)[3]: v for k, v in backbone.items()})
    return rest


def test_convert_command_writes_a_detr_preset(reference, tmp_path):
    from keras_vit.cli import main

    path = tmp_path / "detr-tiny.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in original_state(state_of(reference)).items()}}, path)
    assert main(["convert", str(path), str(tmp_path / "converted"), "--num-heads", "4"]) == 0
    _check(DETR.from_preset(str(tmp_path / "converted")), reference)
