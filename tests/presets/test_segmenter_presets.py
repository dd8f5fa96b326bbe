"""Segmenter presets: the table, and the fetch path of both sources on a tiny
table through `file://` mirrors in each source's layout (official:
`{release}/checkpoint.pth` + `variant.yml`; mmsegmentation: a file whose
name ends in its sha256 prefix), from the same random weights: the two give
the same weights; cached presets are served with the sources gone; a
`variant.yml` that disagrees with the table is refused."""

import hashlib
import os

import numpy as np
import pytest

import keras_vit
from keras_vit import Segmenter
from keras_vit import ViTBackbone
from keras_vit.presets import segmenter_presets
from segmenter_reference import random_decoder_weights
from segmenter_reference import random_encoder_weights
from segmenter_reference import write_mmseg_checkpoint
from segmenter_reference import write_official_checkpoint

pytest.importorskip("torch")
pytest.importorskip("yaml")


@pytest.mark.one_backend("torch", "the table and its configs do not depend on the backend")
def test_table(memory_heavy):
    assert keras_vit.list_presets("segmenter") == [
        "seg_base_8_linear", "seg_base_mask", "seg_large_mask", "seg_small_mask", "seg_tiny_mask"
    ]
    assert set(Segmenter.presets) == set(keras_vit.list_presets("segmenter"))
    assert "seg_base_mask" in ViTBackbone.presets
    model = Segmenter.from_preset("seg_large_mask", load_weights=False)
    assert model.backbone.image_shape == (640, 640, 3) and model.backbone.layer_norm_epsilon == 1e-5
    assert model.num_classes == 150 and model.decoder == "mask_transformer"
    assert model.get_layer("decoder").blocks[0].num_heads == 16  # D / 64
    linear = Segmenter.from_preset("seg_base_8_linear", load_weights=False, num_classes=21)
    assert linear.decoder == "linear" and linear.backbone.patch_size == (8, 8) and linear.num_classes == 21
    for entry in segmenter_presets.SEGMENTER_PRESETS.values():
        if entry["mmseg"]:
            assert entry["mmseg"].rsplit("-", 1)[1][:8].isalnum() and entry["mmseg"].endswith(".pth")
    with pytest.raises(ValueError, match="no release of 'seg_large_mask'"):
        Segmenter.from_preset("seg_large_mask", source="mmseg")
    with pytest.raises(ValueError, match=r"Unknown argument\(s\) \['num_clases'\]"):
        Segmenter.from_preset("seg_tiny_mask", load_weights=False, num_clases=3)


@pytest.fixture
def tiny_table(monkeypatch, tmp_path):
    """seg_tiny_mask shrunk to width 64 (one head, as width / 64), 2 blocks, 8-pixel patches, 32 pixels."""
    monkeypatch.setitem(segmenter_presets._SIZES, "tiny", (64, 2, 1))
    entry = {**segmenter_presets.SEGMENTER_PRESETS["seg_tiny_mask"], "patch_size": 8, "image_size": 32}
    monkeypatch.setitem(segmenter_presets.SEGMENTER_PRESETS, "seg_tiny_mask", entry)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    rng = np.random.default_rng(0)
    encoder = random_encoder_weights(rng, 64, 2, 256, 8, 4)
    decoder = random_decoder_weights(rng, 64, 150, 2, 256)
    return monkeypatch, encoder, decoder


def test_both_sources_fetch_check_convert_and_cache(tiny_table, tmp_path):
    monkeypatch, encoder, decoder = tiny_table
    official = tmp_path / "official"
    write_official_checkpoint(str(official / "seg_tiny_mask"), encoder, decoder, heads=1)
    monkeypatch.setenv("KERAS_VIT_SEGMENTER_ENDPOINT", official.as_uri())
    mmseg = tmp_path / "mmseg"
    staging = write_mmseg_checkpoint(str(tmp_path / "staging.pth"), encoder, decoder)
    digest = hashlib.sha256(open(staging, "rb").read()).hexdigest()[:8]
    folder, name = segmenter_presets.SEGMENTER_PRESETS["seg_tiny_mask"]["mmseg"].split("/")
    name = f"{name.rsplit('-', 1)[0]}-{digest}.pth"
    os.makedirs(mmseg / folder)
    os.replace(staging, mmseg / folder / name)
    entry = {**segmenter_presets.SEGMENTER_PRESETS["seg_tiny_mask"], "mmseg": f"{folder}/{name}"}
    monkeypatch.setitem(segmenter_presets.SEGMENTER_PRESETS, "seg_tiny_mask", entry)
    monkeypatch.setenv("KERAS_VIT_MMSEG_ENDPOINT", mmseg.as_uri())

    a = Segmenter.from_preset("seg_tiny_mask")
    b = Segmenter.from_preset("seg_tiny_mask", source="mmseg")
    assert a.backbone.layer_norm_epsilon == 1e-5 and b.backbone.layer_norm_epsilon == 1e-6
    assert (a.decoder_dropout, b.decoder_dropout) == (0.1, 0.0)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    direct = Segmenter.from_preset(str(official / "seg_tiny_mask" / "checkpoint.pth"))
    for x, y in zip(a.get_weights(), direct.get_weights()):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(
        a.get_layer("decoder").proj_patch.numpy(), decoder["proj_patch"].astype("float32")
    )
    # Cached: served with the sources gone.
    monkeypatch.setenv("KERAS_VIT_SEGMENTER_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_VIT_MMSEG_ENDPOINT", "http://127.0.0.1:9")
    again = Segmenter.from_preset("seg_tiny_mask", num_classes=7)  # new head after the weights load
    assert again.num_classes == 7
    np.testing.assert_array_equal(
        again.backbone.get_weights()[0], a.backbone.get_weights()[0]
    )


def test_a_variant_that_disagrees_with_the_table_is_refused(tiny_table, tmp_path):
    monkeypatch, encoder, decoder = tiny_table
    official = tmp_path / "official"
    write_official_checkpoint(str(official / "seg_tiny_mask"), encoder, decoder, heads=2)
    monkeypatch.setenv("KERAS_VIT_SEGMENTER_ENDPOINT", official.as_uri())
    with pytest.raises(ValueError, match=r"variant.yml of 'seg_tiny_mask' disagrees.*n_heads"):
        Segmenter.from_preset("seg_tiny_mask")
