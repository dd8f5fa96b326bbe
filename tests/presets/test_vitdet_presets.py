"""The ViTDet presets: the plain ViT's parameter count equals transformers'
`VitDetBackbone`'s, the pyramid's is the architecture's, and the whole
download -> convert -> cache path from each source (detectron2's `.pkl`,
timm's MAE file) on full-size random checkpoints in local `file://` mirrors."""

import pickle

import numpy as np
import pytest

from keras_vit import ViTDetBackbone
from keras_vit import list_presets
from keras_vit.presets.published import PARAMETERS
from keras_vit.presets.published import PUBLISHED
from keras_vit.presets.vitdet_presets import VITDET_PRESETS
from keras_vit.presets.vitdet_presets import table_config
from reference_models import images
from reference_models import max_abs_diff
from reference_models import randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
from vitdet_reference import SimpleFeaturePyramid  # noqa: E402 - imports torch
from vitdet_reference import detectron2_state  # noqa: E402

WHY = "parameter counts and the download path are backend-independent (numerics: tests/models/test_vitdet.py, every tier)"
# transformers 5.25's VitDetBackbone at 1024 with relative positions and window 14
# (B measured as issue 27 quotes it: 85,889,024).
SIZES = {"vitdet_b": (768, 12, 12), "vitdet_l": (1024, 24, 16), "vitdet_h": (1280, 32, 16)}


def _hf_config(hidden, layers, heads):
    global_blocks = {layers // 4 * (i + 1) - 1 for i in range(4)}
    return transformers.VitDetConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, image_size=1024, window_size=14,
        window_block_indices=[i for i in range(layers) if i not in global_blocks],
        use_relative_position_embeddings=True, out_features=[f"stage{layers}"],
    )


def pyramid_count(dim, out=256):
    """The simple feature pyramid's weights, from the architecture: transposed
    2x2 convolutions with bias, LayerNorms (scale and shift), bias-free 1x1 and
    3x3 convolutions to `out`, each with a LayerNorm."""
    transpose = lambda cin, cout: 4 * cin * cout + cout  # noqa: E731
    head = lambda cin: cin * out + 2 * out + 9 * out * out + 2 * out  # noqa: E731
    return (
        transpose(dim, dim // 2) + dim + transpose(dim // 2, dim // 4) + head(dim // 4)  # x4
        + transpose(dim, dim // 2) + head(dim // 2)  # x2
        + 2 * head(dim)  # x1 and x0.5
    )


def test_every_preset_is_listed_with_a_count_and_the_detectors_box_ap():
    assert list_presets("vitdet") == sorted(SIZES)
    for name in VITDET_PRESETS:
        assert "COCO box AP" in PUBLISHED[name][0]
        assert PARAMETERS[name] > 0


@pytest.mark.one_backend("torch", WHY)
@pytest.mark.parametrize("name", sorted(SIZES))
def test_parameter_count_is_transformers_plus_the_pyramid(name, memory_heavy):
    hidden, layers, heads = SIZES[name]
    with torch.device("meta"):
        reference = transformers.VitDetBackbone(_hf_config(hidden, layers, heads))
    plain = sum(p.numel() for p in reference.parameters())
    if name == "vitdet_b":
        assert plain == 85_889_024
    # The Keras count equals the table's: tests/presets/test_published.py (built at B).
    assert PARAMETERS[name] == plain + pyramid_count(hidden)
    config = table_config(name)
    windowed = set(reference.config.window_block_indices)
    assert config["global_attention_blocks"] == tuple(i for i in range(layers) if i not in windowed)
    assert (config["window_size"], config["rel_pos_grid"], config["image_shape"]) == (14, (64, 64), (1024, 1024, 3))


@pytest.fixture
def mirrors(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_VIT_HF_ENDPOINT", (tmp_path / "hub").as_uri())
    monkeypatch.setenv("KERAS_VIT_DETECTRON2_ENDPOINT", (tmp_path / "releases").as_uri())
    return tmp_path


@pytest.mark.slow
@pytest.mark.one_backend("torch", WHY)
def test_vitdet_b_from_detectron2_downloads_converts_and_caches(mirrors, memory_heavy):
    """A full-size random ViTDet-B written as detectron2's `.pkl`, fetched,
    converted at 1024, cached; loaded at 128 x 160 it equals the
    references there (positions and global tables resized)."""
    reference = randomize(transformers.VitDetBackbone(_hf_config(768, 12, 12)), std=0.02)
    pyramid = randomize(SimpleFeaturePyramid(768, 256), seed=1, std=0.02)
    state = detectron2_state({k: v.detach().numpy() for k, v in reference.state_dict().items()}, pyramid)
    path = mirrors / "releases" / VITDET_PRESETS["vitdet_b"]["detectron2"]
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    del state
    model = ViTDetBackbone.from_preset("vitdet_b", image_size=(128, 160))
    path.unlink()  # the second load needs no "network"
    x, x_torch = images((1, 128, 160, 3))
    with torch.no_grad():
        plain = reference(x_torch).feature_maps[-1]
        levels = pyramid(plain)
    outputs = model(x)
    for level in ("P2", "P5", "P6"):
        assert max_abs_diff(outputs[level], levels[level].permute(0, 2, 3, 1)) <= 1e-4, level
    again = ViTDetBackbone.from_preset("vitdet_b", image_size=(128, 160))
    assert max_abs_diff(again(x)["P4"], outputs["P4"]) == 0.0


@pytest.mark.slow
@pytest.mark.one_backend("torch", WHY)
def test_vitdet_b_from_mae_takes_the_plain_vit(mirrors, memory_heavy):
    """timm's MAE ViT-B: patch embedding, positions and blocks placed, the
    class token and final norm left out, relative tables zero (detectron2's
    initialisation), the pyramid new."""
    reference = randomize(timm.create_model("vit_base_patch16_224.mae", pretrained=False), std=0.02)
    state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
    path = mirrors / "hub" / VITDET_PRESETS["vitdet_b"]["mae"] / "resolve" / "main" / "model.safetensors"
    path.parent.mkdir(parents=True)
    safetensors_numpy.save_file(state, str(path))
    with pytest.warns(UserWarning, match="plain ViT only"):
        model = ViTDetBackbone.from_preset("vitdet_b", source="mae", image_size=(64, 64))
    block = model.get_layer("block_7")
    np.testing.assert_array_equal(np.asarray(block.attention.qkv.kernel), state["blocks.7.attn.qkv.weight"].T)
    np.testing.assert_array_equal(np.asarray(block.attention.rel_pos_h), 0.0)
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("position_embedding").position_embedding), state["pos_embed"][0]
    )


@pytest.mark.one_backend("torch", "numpy resampling")
def test_vit_h_patch_kernel_and_positions_resample_as_torch():
    """ViTDet-H's MAE weights: 14 x 14 patches to 16 x 16 and the 16 x 16
    position grid to 14 x 14, bicubic (torch's `F.interpolate`)."""
    from keras_vit.conversion.vitdet import resample_patch_kernel
    from keras_vit.conversion.vitdet import resample_positions

    kernel = np.random.default_rng(0).normal(size=(5, 3, 14, 14)).astype("float32")
    expected = torch.nn.functional.interpolate(torch.from_numpy(kernel), size=(16, 16), mode="bicubic", align_corners=False)
    np.testing.assert_allclose(resample_patch_kernel(kernel, 16), expected.numpy(), atol=1e-5)
    table = np.random.default_rng(1).normal(size=(1, 257, 4)).astype("float32")
    grid = torch.from_numpy(table[0, 1:].reshape(1, 16, 16, 4)).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(14, 14), mode="bicubic", align_corners=False)
    resized = resample_positions(table, 14)
    assert resized.shape == (1, 197, 4)
    np.testing.assert_array_equal(resized[0, 0], table[0, 0])
    np.testing.assert_allclose(resized[0, 1:].reshape(14, 14, 4), expected[0].permute(1, 2, 0).numpy(), atol=1e-5)
