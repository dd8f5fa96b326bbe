"""Swin against timm and transformers (random weights, odd tiny configs),
through the same conversion code and file formats as the releases; the
multi-scale contract; DETR on a Swin."""

import json

import keras
import numpy as np
import pytest

from keras_vit import DETR
from keras_vit import ResNetBackbone
from keras_vit import Swin
from keras_vit import SwinBackbone
from keras_vit.conversion.swin import detect_swin_layout
from reference_models import images
from reference_models import max_abs_diff
from reference_models import randomize
from reference_models import swin_official_layout

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TOLERANCE = 1e-4

# Width 10 (not a power of two), odd head counts (1, 5, 5), window 3: the
# 48x48 input gives stages of 12, 6 and 3 tokens, the last no larger than
# the window (one window, no shift).
TIMM_ARGS = dict(img_size=(48, 48), embed_dim=10, depths=(2, 3, 1), num_heads=(1, 5, 5), window_size=3, num_classes=7)


@pytest.fixture(scope="module")
def timm_swin():
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **TIMM_ARGS)
    return randomize(model, seed=3)


def _state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def converted(timm_swin, tmp_path_factory):
    """The timm model through `Swin.from_preset` of a timm safetensors file."""
    path = tmp_path_factory.mktemp("swin") / "model.safetensors"
    safetensors_numpy.save_file(_state(timm_swin), str(path))
    return Swin.from_preset(str(path), image_size=48)


def test_classifier_and_stages_match_timm(timm_swin, converted):
    x, x_torch = images((2, 48, 48, 3))
    assert converted.backbone.stage_windows == [(3, 1), (3, 1), (3, 0)]  # (window, shift of odd blocks)
    with torch.no_grad():
        expected = timm_swin(x_torch)
        stages = timm_swin.forward_intermediates(x_torch, intermediates_only=True, norm=False)
    assert max_abs_diff(converted(x), expected) <= TOLERANCE
    features = converted.backbone.feature_extractor()(x)
    for index, stage in enumerate(stages, start=1):
        assert max_abs_diff(features[f"stage_{index}"], stage.permute(0, 2, 3, 1)) <= TOLERANCE


def test_official_pth_layout_loads_the_same(timm_swin, converted, tmp_path):
    """`{"model": ...}` with merging at the end of each stage and `head`;
    the saved `relative_position_index` / `attn_mask` buffers are recomputed,
    not loaded (here they hold garbage)."""
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": swin_official_layout(_state(timm_swin), TIMM_ARGS["depths"])}, path)
    model = Swin.from_preset(str(path), image_size=48)
    x = images((1, 48, 48, 3), seed=1)[0]
    assert max_abs_diff(model(x), converted(x)) == 0.0


def _transformers_folder(tmp_path, size=(45, 61)):
    config = transformers.SwinConfig(
        image_size=list(size), patch_size=4, embed_dim=10, depths=[2, 2, 2], num_heads=[5, 1, 5], window_size=3,
        num_labels=4,
    )
    config._attn_implementation = "eager"
    reference = randomize(transformers.SwinForImageClassification(config), seed=4)
    reference.save_pretrained(tmp_path)
    return reference


def test_non_square_padded_sizes_match_transformers(tmp_path):
    """45x61 pixels: the image is padded to the patch, every stage to the
    window (12x16 -> 12x18, 6x8 -> 6x9, 3x4 -> one row of windows), as
    transformers' SwinModel does; logits and the stage outputs (before each
    merging) equal."""
    reference = _transformers_folder(tmp_path)
    model = Swin.from_preset(str(tmp_path / "model.safetensors"))
    assert model.backbone.image_shape == (45, 61, 3)
    x, x_torch = images((2, 45, 61, 3), seed=2)
    with torch.no_grad():
        expected = reference(x_torch).logits
        hidden = reference.swin(
            x_torch, output_hidden_states=True, output_hidden_states_before_downsampling=True
        ).reshaped_hidden_states
    assert max_abs_diff(model(x), expected) <= TOLERANCE
    features = model.backbone.pyramid_extractor()(x)
    for level, stage in zip(("P2", "P3", "P4"), hidden[1:]):
        assert max_abs_diff(features[level], stage.permute(0, 2, 3, 1)) <= TOLERANCE


def test_layouts_are_told_apart():
    assert detect_swin_layout({"patch_embed.proj.weight": 0, "layers.0.blocks.0.attn.relative_position_bias_table": 0}) == "timm"
    official = {"patch_embed.proj.weight": 0, "layers.0.blocks.0.attn.relative_position_bias_table": 0, "layers.0.downsample.reduction.weight": 0}
    assert detect_swin_layout(official) == "official"
    assert detect_swin_layout({"patch_embed.proj.weight": 0, "pos_embed": 0}) is None


def test_a_swin_file_is_not_a_vit(converted, tmp_path):
    from keras_vit import ViT

    path = tmp_path / "swin.safetensors"
    safetensors_numpy.save_file({"patch_embed.proj.weight": np.zeros((4, 3, 4, 4), "float32"),
                                 "layers.0.blocks.0.attn.relative_position_bias_table": np.zeros((9, 1), "float32")}, str(path))
    with pytest.raises(ValueError, match="Swin"):
        ViT.from_preset(str(path))


def test_any_input_size_equals_a_model_built_for_it(converted):
    """`image_size=(None, None)`: every stage keeps the window and shifts, the
    same function as a model built at a size where every stage is larger
    than the window."""
    x = images((1, 64, 52, 3), seed=5)[0]
    weights = converted.get_weights()
    config = converted.get_config()
    config["backbone"]["config"]["image_shape"] = (None, None, 3)
    flexible = Swin.from_config(config)
    flexible.set_weights(weights)
    config["backbone"]["config"]["image_shape"] = (64, 52, 3)
    fixed = Swin.from_config(config)
    fixed.set_weights(weights)
    assert flexible.backbone.stage_windows == fixed.backbone.stage_windows == [(3, 1)] * 3
    assert max_abs_diff(flexible(x), fixed(x)) <= 1e-5


def test_pyramid_contract():
    backbone = SwinBackbone(image_shape=(64, 96, 3), hidden_dim=6, depths=(1, 1, 1, 1), num_heads=(1, 1, 3, 3), window_size=2)
    assert {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()} == {
        "P2": (None, 16, 24, 6), "P3": (None, 8, 12, 12), "P4": (None, 4, 6, 24), "P5": (None, 2, 3, 48),
    }
    assert list(backbone.pyramid_extractor(["P3", "P5"]).output) == ["P3", "P5"]
    resnet = ResNetBackbone((1, 1, 1, 1), stage_filters=(8, 16, 24, 32), stem_filters=4)
    assert resnet.pyramid_feature_names == {"P2": "stage_1", "P3": "stage_2", "P4": "stage_3", "P5": "stage_4"}
    assert resnet.pyramid_outputs["P5"] is resnet.output
    with pytest.raises(ValueError, match="Unknown pyramid level 'P6'"):
        backbone.pyramid_extractor(["P6"])


def test_detr_on_swin_trains_with_fit():
    backbone = SwinBackbone(image_shape=(None, None, 3), hidden_dim=6, depths=(1, 1, 1, 1), num_heads=(1, 2, 3, 3), window_size=3)
    model = DETR(backbone, num_classes=3, num_queries=5, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=2, ffn_dim=20)
    x = np.random.default_rng(0).uniform(0, 255, (2, 70, 90, 3)).astype("float32")
    y = {
        "boxes": np.array([[[5, 5, 30, 40], [0, 0, 0, 0]], [[10, 10, 60, 60], [20, 20, 50, 50]]], "float32"),
        "labels": np.array([[1, -1], [0, 2]]),
    }
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = backbone.get_layer("stage_1_block_0").get_weights()
    history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = backbone.get_layer("stage_1_block_0").get_weights()
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    assert not backbone.get_layer("final_norm").trainable  # after P5: no gradient, frozen
    assert model.get_config()["feature_level"] == "P5"
    p4 = DETR(backbone, num_classes=3, num_queries=5, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=20, feature_level="P4")
    assert p4._feature_model.output.shape[-1] == 24  # the third stage's width
    with pytest.raises(ValueError, match="feature_level='P5'"):
        DETR(keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 1)]), feature_level="P4")


def test_classifier_saves_fits_and_rejects_bad_arguments(tmp_path):
    backbone = SwinBackbone(image_shape=(40, 40, 3), hidden_dim=6, depths=(2, 1), num_heads=(3, 3), window_size=5)
    model = Swin(backbone, num_classes=3)
    model.compile()
    x = np.random.default_rng(0).normal(size=(4, 40, 40, 3)).astype("float32")
    model.fit(x, np.array([0, 1, 2, 1]), epochs=1, batch_size=2, verbose=0)
    model.save_to_preset(tmp_path / "preset")
    again = Swin.from_preset(str(tmp_path / "preset"))
    assert max_abs_diff(again(x), model(x)) == 0.0
    assert json.loads((tmp_path / "preset" / "config.json").read_text())["config"]["backbone"]["config"]["depths"] == [2, 1]
    with pytest.raises(TypeError, match="SwinBackbone"):
        Swin(ResNetBackbone((1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"num_heads\[1\]=5 must divide"):
        SwinBackbone(hidden_dim=6, depths=(1, 1), num_heads=(3, 5))
    with pytest.raises(ValueError, match="depths"):
        SwinBackbone(depths=())
    with pytest.raises(TypeError, match="unknown keyword"):
        SwinBackbone(window=7)


def test_bfloat16_is_finite_and_close(converted):
    """The converted model in bfloat16: finite, and within bfloat16's
    precision of float32 (relative to the largest logit)."""
    config = converted.get_config()
    config["dtype"] = "mixed_bfloat16"
    config["backbone"]["config"]["dtype"] = "mixed_bfloat16"
    half = Swin.from_config(config)
    half.set_weights(converted.get_weights())
    x = images((2, 48, 48, 3), seed=6)[0]
    if keras.backend.backend() == "jax":
        pytest.skip("JAX compiles the whole bfloat16 graph anew (25 s on 2 cores); the casts are keras_vit code, "
                    "the same on every backend: the TensorFlow and torch tiers check them")
    expected = converted.predict(x, verbose=0)
    got = np.asarray(half.predict(x, verbose=0), "float32")
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max()
