"""The Swin presets: sizes and parameter counts equal timm's, and the whole
download -> convert -> cache path from each release layout (timm's hub file,
the official GitHub `.pth`), on full-size random checkpoints written in those
layouts to local `file://` mirrors."""

import pytest

from keras_vit import Swin
from keras_vit import list_presets
from keras_vit.presets.published import PARAMETERS
from keras_vit.presets.published import PUBLISHED
from keras_vit.presets.swin_presets import SWIN_PRESETS
from reference_models import check_release_round_trip
from reference_models import randomize
from reference_models import swin_official_layout

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("safetensors.numpy")

TIMM_ARCHITECTURES = {
    "swin_t": ("swin_tiny_patch4_window7_224", 28_288_354),
    "swin_s": ("swin_small_patch4_window7_224", 49_606_258),
    "swin_b": ("swin_base_patch4_window7_224", 87_768_224),
    "swin_b_384": ("swin_base_patch4_window12_384", 87_903_584),
    "swin_l": ("swin_large_patch4_window7_224", 196_532_476),
}
WHY = "parameter counts and the download path are backend-independent (numerics: tests/models/test_swin.py, every tier)"


def test_every_preset_is_listed_with_a_count_and_a_score():
    assert list_presets("swin") == sorted(TIMM_ARCHITECTURES)
    for name in SWIN_PRESETS:
        assert PARAMETERS[name] == TIMM_ARCHITECTURES[name][1]
        assert PUBLISHED[name][0].startswith("ImageNet top-1")


@pytest.mark.one_backend("torch", WHY)
@pytest.mark.parametrize("name", sorted(TIMM_ARCHITECTURES))
def test_parameter_count_equals_timm(name):
    """timm's count (on the meta device: no memory) is the table's, which
    tests/presets/test_published.py checks against the built Keras model."""
    architecture, count = TIMM_ARCHITECTURES[name]
    with torch.device("meta"):
        reference = timm.create_model(architecture, pretrained=False)
    assert sum(p.numel() for p in reference.parameters()) == count
    backbone = SWIN_PRESETS[name]["backbone"]
    assert backbone["window_size"] == reference.layers[0].blocks[0].attn.window_size[0]
    assert backbone["hidden_dim"] == reference.embed_dim
    assert backbone["depths"] == tuple(len(stage.blocks) for stage in reference.layers)
    assert backbone["num_heads"] == tuple(stage.blocks[0].attn.num_heads for stage in reference.layers)


@pytest.fixture
def mirrors(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", (tmp_path / "hub").as_uri())
    monkeypatch.setenv("KERAS_VIT_SWIN_ENDPOINT", (tmp_path / "releases").as_uri())
    return tmp_path


@pytest.mark.slow
@pytest.mark.one_backend("torch", WHY)
@pytest.mark.parametrize("source", ["timm", "official"])
def test_swin_t_downloads_converts_and_caches(source, mirrors, memory_heavy):
    reference = randomize(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False), std=0.02)
    entry = SWIN_PRESETS["swin_t"]
    check_release_round_trip(
        Swin, "swin_t", source, reference, mirrors, entry["timm"], entry["official"],
        lambda state: {"model": swin_official_layout(state, (2, 2, 6, 2))},
    )
