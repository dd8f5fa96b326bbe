"""The MViTv2 presets: sizes and parameter counts equal timm's, and the whole
download -> convert -> cache path from each release layout (timm's hub file,
the official `.pyth`), on full-size random checkpoints in local `file://` mirrors."""

import pytest

from keras_vit import MViT
from keras_vit import list_presets
from keras_vit.presets.mvit_presets import MVIT_PRESETS
from keras_vit.presets.published import PARAMETERS
from keras_vit.presets.published import PUBLISHED
from reference_models import check_release_round_trip
from reference_models import mvit_official_layout
from reference_models import randomize

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("safetensors.numpy")

TIMM_ARCHITECTURES = {
    "mvitv2_t": ("mvitv2_tiny", 24_173_320),
    "mvitv2_s": ("mvitv2_small", 34_870_216),
    "mvitv2_b": ("mvitv2_base", 51_472_744),
    "mvitv2_l": ("mvitv2_large", 217_992_952),
}
WHY = "parameter counts and the download path are backend-independent (numerics: tests/models/test_mvit.py, every tier)"


def test_every_preset_is_listed_with_a_count_and_a_score():
    assert list_presets("mvit") == sorted(TIMM_ARCHITECTURES)
    for name in MVIT_PRESETS:
        assert PARAMETERS[name] == TIMM_ARCHITECTURES[name][1]
        assert PUBLISHED[name][0].startswith("ImageNet top-1")


@pytest.mark.one_backend("torch", WHY)
@pytest.mark.parametrize("name", sorted(TIMM_ARCHITECTURES))
def test_parameter_count_and_layout_equal_timm(name):
    """timm's count on the meta device; the table's layout equals what the
    converter reads off timm's tensors (test_published checks the Keras count)."""
    import numpy as np

    from keras_vit.conversion.mvit import mvit_config_from_state_dict

    architecture, count = TIMM_ARCHITECTURES[name]
    with torch.device("meta"):
        reference = timm.create_model(architecture, pretrained=False)
    assert sum(p.numel() for p in reference.parameters()) == count
    read = mvit_config_from_state_dict({k: np.zeros(v.shape, "float32") for k, v in reference.state_dict().items()})
    assert {k: read["backbone"][k] for k in MVIT_PRESETS[name]["backbone"]} == MVIT_PRESETS[name]["backbone"]


@pytest.fixture
def mirrors(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", (tmp_path / "hub").as_uri())
    monkeypatch.setenv("KERAS_VIT_MVIT_ENDPOINT", (tmp_path / "releases").as_uri())
    return tmp_path


@pytest.mark.slow
@pytest.mark.one_backend("torch", WHY)
@pytest.mark.parametrize("source", ["timm", "official"])
def test_mvitv2_t_downloads_converts_and_caches(source, mirrors, memory_heavy):
    reference = randomize(timm.create_model("mvitv2_tiny", pretrained=False), std=0.02)
    entry = MVIT_PRESETS["mvitv2_t"]
    check_release_round_trip(
        MViT, "mvitv2_t", source, reference, mirrors, entry["timm"], entry["official"],
        lambda state: {"model_state": mvit_official_layout(state, (1, 2, 5, 2))},
    )
