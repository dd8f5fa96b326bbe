import json
import os

import numpy as np
import pytest

import keras_vit
from keras_vit import ViT
from keras_vit import ViTBackbone
from keras_vit.presets import VIT_PRESETS
from layer_checks import to_np

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

# The timm architecture each preset mirrors.
TIMM_NAMES = {
    "vit_ti16": "vit_tiny_patch16_224",
    "vit_s16": "vit_small_patch16_224",
    "vit_s32": "vit_small_patch32_224",
    "vit_b8": "vit_base_patch8_224",
    "vit_b16": "vit_base_patch16_224",
    "vit_b32": "vit_base_patch32_224",
    "vit_l16": "vit_large_patch16_224",
    "vit_l32": "vit_large_patch32_384",
    "vit_h14": "vit_huge_patch14_224",
    "deit_ti16": "deit_tiny_patch16_224",
    "deit_s16": "deit_small_patch16_224",
    "deit_b16": "deit_base_patch16_224",
    "r50_vit_b16": "vit_base_r50_s16_384",
    "r26_vit_s32": "vit_small_r26_s32_224",
    "r_vit_ti16": "vit_tiny_r_s16_p8_224",
    "vit_ti16_in21k": "vit_tiny_patch16_224",
    "vit_s16_in21k": "vit_small_patch16_224",
    "vit_b16_in21k": "vit_base_patch16_224",
    "vit_l16_in21k": "vit_large_patch16_224",
    "vit_b16_orig_in21k": "vit_base_patch16_224",
    "vit_b16_mae": "vit_base_patch16_224",
}
LARGE = {"vit_l16", "vit_l32", "vit_h14", "r50_vit_b16", "vit_l16_in21k", "vit_b16_in21k", "vit_b16_orig_in21k"}


def _timm_count(name):
    with torch.device("meta"):
        # the preset's class count: 21,843 for the in21k heads, 0 for the headless releases
        model = timm.create_model(
            TIMM_NAMES[name], pretrained=False, num_classes=VIT_PRESETS[name]["classifier"]["num_classes"]
        )
    return sum(p.numel() for p in model.parameters())


def test_every_preset_has_a_reference():
    assert sorted(TIMM_NAMES) == keras_vit.list_presets("vit")
    required = {"vit_ti16", "vit_s16", "vit_s32", "vit_b16", "vit_b32", "vit_l16", "vit_l32", "vit_h14"}
    assert required <= set(VIT_PRESETS)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in sorted(TIMM_NAMES)],
)
@pytest.mark.one_backend("torch", "counts do not depend on the backend")
def test_parameter_count_equals_timm(name, memory_heavy):
    model = ViT.from_preset(name, load_weights=False)
    assert model.count_params() == _timm_count(name)


def test_vit_b16_count_equals_transformers():
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        reference = transformers.ViTForImageClassification(transformers.ViTConfig(num_labels=1000))
    model = ViT.from_preset("vit_b16", load_weights=False)
    assert model.count_params() == sum(p.numel() for p in reference.parameters())


def test_preprocessing_per_family():
    vit = ViT.from_preset("vit_b16", load_weights=False).preprocessor
    deit = ViT.from_preset("deit_b16", load_weights=False).preprocessor
    assert vit.mean == (0.5, 0.5, 0.5) and vit.std == (0.5, 0.5, 0.5)  # [-1, 1]
    assert deit.mean == (0.485, 0.456, 0.406) and deit.std == (0.229, 0.224, 0.225)
    white = np.full((1, 224, 224, 3), 255.0, "float32")
    np.testing.assert_allclose(to_np(vit(white)), 1.0, atol=1e-6)


def test_overrides_and_front_door():
    model = ViT.from_preset("vit_b16", num_classes=10, image_size=384, load_weights=False)
    assert model.output_shape == (None, 10)
    assert model.backbone.grid_size == (24, 24)
    assert model.preprocessor.image_size == (384, 384)
    backbone = ViTBackbone.from_preset("vit_s16", load_weights=False, drop_path_rate=0.1)
    assert backbone.hidden_dim == 384 and backbone.drop_path_rate == 0.1


def test_unknown_preset_names_the_closest_match():
    with pytest.raises(ValueError, match=r"Unknown preset 'vit_b17'.*closest match is 'vit_b16'.*vit_ti16"):
        ViT.from_preset("vit_b17", load_weights=False)


def test_unknown_override():
    with pytest.raises(ValueError, match=r"Unknown argument\(s\) \['hidden_size'\]"):
        ViT.from_preset("vit_ti16", load_weights=False, hidden_size=3)


def test_no_network_fails_fast_and_says_how_to_load_local_weights(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.time()
    with pytest.raises(ConnectionError, match=r"pass its local path to from_preset"):
        ViT.from_preset("vit_ti16")
    assert time.time() - start < 10
    assert not os.listdir(os.path.join(str(tmp_path), "keras_vit", "downloads"))  # nothing half-written


def _tiny_model():
    backbone = ViTBackbone(
        image_shape=(30, 30, 3), patch_size=3, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37
    )
    return ViT(backbone, num_classes=5, preprocessor=keras_vit.ViTImagePreprocessor(30))


def test_preset_directory_round_trip(tmp_path):
    model = _tiny_model()
    model.save_to_preset(str(tmp_path), metadata={"source": "test"})
    assert sorted(os.listdir(tmp_path)) == [
        "config.json", "metadata.json", "model.weights.h5", "preprocessor.json"
    ]
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["parameter_count"] == model.count_params() and metadata["source"] == "test"
    x = np.random.default_rng(0).normal(size=(2, 30, 30, 3)).astype("float32")
    restored = ViT.from_preset(str(tmp_path))
    np.testing.assert_allclose(to_np(restored(x)), to_np(model(x)), atol=1e-6)
    def settings(layer):
        return {k: v for k, v in layer.get_config().items() if k != "name"}

    assert settings(restored.preprocessor) == settings(model.preprocessor)


def test_cached_preset_is_used(tmp_path, monkeypatch):
    """A converted preset in $KERAS_HOME/keras_vit/presets/<name> loads by name."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = ViT.from_preset("vit_ti16", load_weights=False)
    model.save_to_preset(os.path.join(keras_vit.preset_cache_dir(), "vit_ti16"))
    x = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(to_np(ViT.from_preset("vit_ti16")(x)), to_np(model(x)), atol=1e-5)


def test_new_resolution_and_head_keep_the_other_weights(tmp_path):
    model = _tiny_model()
    model.save_to_preset(str(tmp_path))
    bigger = ViT.from_preset(str(tmp_path), image_size=(36, 42), num_classes=3)
    assert bigger.backbone.grid_size == (12, 14)
    source_block = model.backbone.get_layer("block_1").get_weights()
    for a, b in zip(source_block, bigger.backbone.get_layer("block_1").get_weights()):
        np.testing.assert_array_equal(a, b)
    table = bigger.backbone.get_layer("position_embedding").get_weights()[0]
    expected = model.backbone.get_layer("position_embedding").resized_embedding((12, 14))
    np.testing.assert_allclose(table, expected, atol=1e-7)
    assert bigger.get_layer("head").kernel.shape == (32, 3)


def test_weights_that_do_not_match_the_architecture(tmp_path):
    model = _tiny_model()
    model.save_to_preset(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["backbone"]["config"]["mlp_dim"] = 40
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"does not match the architecture"):
        ViT.from_preset(str(tmp_path))


def test_not_a_preset_directory(tmp_path):
    with pytest.raises(ValueError, match="is not a preset directory"):
        ViT.from_preset(str(tmp_path))
