"""R50+ViT hybrids equal timm's hybrid VisionTransformer with the same (random) weights."""

from functools import partial

import numpy as np
import pytest

from keras_vit import ViTBackbone
from keras_vit.conversion import load_timm_state_dict
from keras_vit.conversion import vit_config_from_timm
from keras_vit.layers import BottleneckBlock
from keras_vit.layers import ResNetStem
from keras_vit.layers import StdConv2D
from layer_checks import check_config_round_trip
from layer_checks import to_np
from reference_models import images
from reference_models import keras_model
from reference_models import max_abs_diff
from reference_models import randomize

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

TOLERANCE = 1e-4


def _timm_hybrid(layers, image_size, patch_size=1):
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer
    from timm.models.vision_transformer_hybrid import _resnetv2

    return randomize(
        VisionTransformer(
            img_size=image_size, patch_size=patch_size, embed_dim=32, depth=2, num_heads=4,
            mlp_ratio=37 / 32, num_classes=5,
            embed_layer=partial(HybridEmbed, backbone=_resnetv2(layers=layers)),
        )
    )


@pytest.mark.parametrize(
    "layers, image_size, patch_size", [((1, 2), 48, 1), ((), 40, 2)], ids=["two_stages", "stem_only"]
)
def test_tiny_hybrid_matches_timm(layers, image_size, patch_size):
    reference = _timm_hybrid(layers, image_size, patch_size)
    state_dict = reference.state_dict()
    config = vit_config_from_timm(state_dict, num_heads=4)
    assert config["backbone"]["hybrid_layers"] == layers
    model = load_timm_state_dict(keras_model(config), state_dict)
    x, x_torch = images((2, image_size, image_size, 3))
    with torch.no_grad():
        expected = reference(x_torch)
        expected_map = reference.patch_embed.backbone(x_torch) if layers else None
    assert max_abs_diff(model(x), expected) <= TOLERANCE
    if layers:
        name = f"stage_{len(layers) - 1}"
        feature = model.backbone.feature_extractor([name])(x)[name]
        assert max_abs_diff(feature, expected_map.permute(0, 2, 3, 1)) <= TOLERANCE


def test_feature_maps_are_published_by_name():
    backbone = ViTBackbone(
        image_shape=(64, 64, 3), patch_size=1, hidden_dim=32, num_layers=1, num_heads=4,
        mlp_dim=37, hybrid_layers=(1, 1, 1),
    )
    assert backbone.grid_size == (4, 4)  # stride 16
    assert backbone.feature_names[:4] == ["stem", "stage_0", "stage_1", "stage_2"]
    maps = backbone.feature_extractor(["stem", "stage_0", "stage_1", "stage_2"])(np.zeros((1, 64, 64, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "stem": (1, 16, 16, 64), "stage_0": (1, 16, 16, 256),
        "stage_1": (1, 8, 8, 512), "stage_2": (1, 4, 4, 1024),
    }
    attention = backbone.attention_maps(np.zeros((1, 64, 64, 3), "float32"))["attention"]
    assert tuple(attention["block_0"].shape) == (1, 4, 17, 17)


def test_std_conv_standardises_each_filter():
    layer = StdConv2D(4, 3)
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 2)).astype("float32")
    out = to_np(layer(x))
    kernel = to_np(layer.kernel).astype("float64")
    kernel = (kernel - kernel.mean((0, 1, 2))) / np.sqrt(kernel.var((0, 1, 2)) + 1e-8)
    # Centre pixel (2, 2) of a 'same' 3x3 convolution, by hand.
    expected = np.einsum("hwc,hwco->o", x[0, 1:4, 1:4], kernel)
    np.testing.assert_allclose(out[0, 2, 2], expected, atol=1e-4)


def test_hybrid_image_size_must_fit_the_stride():
    with pytest.raises(ValueError, match="stride 16"):
        ViTBackbone(image_shape=(72, 72, 3), patch_size=1, hidden_dim=32, num_layers=1,
                    num_heads=4, mlp_dim=37, hybrid_layers=(1, 1, 1))
    with pytest.raises(TypeError, match="hybrid_layers"):
        ViTBackbone(image_shape=(64, 64, 3), patch_size=1, hidden_dim=32, num_layers=1,
                    num_heads=4, mlp_dim=37, hybrid_layers=3)


def test_layer_config_round_trips():
    check_config_round_trip(StdConv2D(8, 3, strides=2, epsilon=1e-5), np.zeros((1, 8, 8, 3), "float32"))
    check_config_round_trip(ResNetStem(64), np.zeros((1, 16, 16, 3), "float32"))
    check_config_round_trip(
        BottleneckBlock(128, strides=2, project=True), np.zeros((1, 8, 8, 64), "float32")
    )


@pytest.mark.slow
def test_r50_vit_b16_matches_timm():
    reference = randomize(timm.create_model("vit_base_r50_s16_384", pretrained=False), std=0.02)
    state_dict = reference.state_dict()
    model = load_timm_state_dict(keras_model(vit_config_from_timm(state_dict, num_heads=12)), state_dict)
    assert model.count_params() == sum(p.numel() for p in reference.parameters())
    x, x_torch = images((1, 384, 384, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE
