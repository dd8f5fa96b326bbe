import keras
import numpy as np
import pytest

from keras_vit import ViTBackbone
from layer_checks import to_np


def test_output_and_feature_shapes(tiny_config):
    backbone = ViTBackbone(**tiny_config)
    x = np.random.default_rng(0).normal(size=(2, 30, 30, 3)).astype("float32")
    assert tuple(backbone(x).shape) == (2, 101, 32)  # 100 patches + class token
    assert backbone.feature_names == ["block_0", "block_1", "encoder_norm"]
    features = backbone.feature_extractor(["block_0", "encoder_norm"])(x)
    assert tuple(features["block_0"].shape) == (2, 101, 32)
    np.testing.assert_allclose(to_np(features["encoder_norm"]), to_np(backbone(x)), atol=1e-6)


def test_non_square_and_no_class_token(tiny_config):
    tiny_config.update(image_shape=(15, 27, 3), use_class_token=False)
    backbone = ViTBackbone(**tiny_config)
    assert backbone.grid_size == (5, 9)
    assert tuple(backbone(np.zeros((1, 15, 27, 3), "float32")).shape) == (1, 45, 32)


def test_attention_maps_match_the_fused_path(tiny_config):
    backbone = ViTBackbone(**tiny_config)
    x = np.random.default_rng(0).normal(size=(2, 30, 30, 3)).astype("float32")
    maps = backbone.attention_maps(x)
    np.testing.assert_allclose(to_np(maps["tokens"]), to_np(backbone(x)), atol=1e-5)
    assert sorted(maps["attention"]) == ["block_0", "block_1"]
    probs = to_np(maps["attention"]["block_1"])
    assert probs.shape == (2, 4, 101, 101)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_batch_of_two_equals_singles(tiny_config):
    backbone = ViTBackbone(**tiny_config)
    x = np.random.default_rng(0).normal(size=(2, 30, 30, 3)).astype("float32")
    both = to_np(backbone(x))
    for i in range(2):
        np.testing.assert_allclose(to_np(backbone(x[i : i + 1]))[0], both[i], atol=1e-5)


def test_drop_path_grows_linearly(tiny_config):
    tiny_config.update(num_layers=3, drop_path_rate=0.2)
    backbone = ViTBackbone(**tiny_config)
    rates = [backbone.get_layer(f"block_{i}").drop_path_rate for i in range(3)]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2])


def test_config_round_trip(tiny_config):
    tiny_config.update(layer_scale_init=1e-5, gelu_approximate=True, drop_path_rate=0.1)
    backbone = ViTBackbone(**tiny_config)
    clone = ViTBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()


def test_unknown_feature_name(tiny_config):
    backbone = ViTBackbone(**tiny_config)
    with pytest.raises(ValueError, match=r"Unknown feature name 'block_9'.*Available"):
        backbone.feature_extractor(["block_9"])


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"image_shape": (31, 30, 3)}, ValueError, "divisible by patch_size"),
        ({"image_shape": (30, 30)}, ValueError, r"image_shape must be \(height, width, channels\)"),
        ({"num_heads": 5}, ValueError, "num_heads must divide hidden_dim"),
        ({"dropout_rate": -0.1}, ValueError, "dropout_rate"),
        ({"attention_dropout_rate": -0.1}, ValueError, "attention_dropout_rate"),
        ({"drop_path_rate": 1.0}, ValueError, "drop_path_rate"),
        ({"num_layers": 0}, ValueError, "num_layers"),
        ({"hidden_dim": "32"}, TypeError, "hidden_dim"),
    ],
)
def test_bad_arguments(tiny_config, overrides, error, match):
    tiny_config.update(overrides)
    with pytest.raises(error, match=match):
        ViTBackbone(**tiny_config)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 30, 30, 1), r"must have 3 channels.*Received: images.shape=\(2, 30, 30, 1\)"),
        ((30, 30, 3), "must have rank 4"),
        ((2, 33, 30, 3), "must be 30x30 pixels"),
    ],
)
def test_bad_input(tiny_config, shape, match):
    backbone = ViTBackbone(**tiny_config)
    with pytest.raises(ValueError, match=match):
        backbone(np.zeros(shape, "float32"))


def test_grayscale_model(tiny_config):
    tiny_config["image_shape"] = (30, 30, 1)
    backbone = ViTBackbone(**tiny_config)
    assert tuple(backbone(keras.ops.zeros((1, 30, 30, 1))).shape) == (1, 101, 32)
