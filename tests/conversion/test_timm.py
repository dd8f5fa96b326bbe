"""keras_vit equals timm's VisionTransformer with the same (random) weights."""

import pytest

from keras_vit.conversion import load_timm_state_dict
from keras_vit.conversion import vit_config_from_timm
from keras_vit.presets.vit_presets import transfer_weights
from reference_models import images
from reference_models import keras_model
from reference_models import max_abs_diff
from reference_models import randomize

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

TOLERANCE = 1e-4


def _tiny_timm(**kwargs):
    args = dict(
        img_size=30, patch_size=3, embed_dim=32, depth=2, num_heads=4,
        mlp_ratio=37 / 32, num_classes=5,
    )
    args.update(kwargs)
    return randomize(timm.models.vision_transformer.VisionTransformer(**args))


def _convert(reference, num_heads=4, image_size=None):
    state_dict = reference.state_dict()
    config = vit_config_from_timm(state_dict, num_heads=num_heads, image_size=image_size)
    model = keras_model(config)
    load_timm_state_dict(model, state_dict)
    return model


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"init_values": 1e-5},  # LayerScale
        {"global_pool": "avg", "class_token": False, "fc_norm": False},  # original 'gap'
        {"qkv_bias": False},
    ],
    ids=["token", "layer_scale", "gap", "no_qkv_bias"],
)
def test_tiny_logits_and_tokens_match(kwargs):
    reference = _tiny_timm(**kwargs)
    model = _convert(reference)
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected_logits = reference(x_torch)
        expected_tokens = reference.forward_features(x_torch)
    assert max_abs_diff(model(x), expected_logits) <= TOLERANCE
    assert max_abs_diff(model.backbone(x), expected_tokens) <= TOLERANCE


def test_non_square_image():
    reference = _tiny_timm(img_size=(24, 33))
    model = _convert(reference, image_size=(24, 33))
    x, x_torch = images((2, 24, 33, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_resized_position_embedding_matches_timm_dynamic_image_size():
    reference = _tiny_timm(dynamic_img_size=True)
    model = _convert(reference)
    config = vit_config_from_timm(reference.state_dict(), num_heads=4, image_size=(36, 42))
    resized = keras_model(config)
    transfer_weights(model, resized)  # bicubic + antialias, as timm
    x, x_torch = images((2, 36, 42, 3), seed=3)
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(resized(x), expected) <= TOLERANCE


def test_wrong_architecture_is_rejected_with_the_key():
    reference = _tiny_timm()
    config = vit_config_from_timm(reference.state_dict(), num_heads=4)
    config["backbone"]["mlp_dim"] = 40
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.fc1\.weight"):
        load_timm_state_dict(keras_model(config), reference.state_dict())


@pytest.mark.slow
def test_full_vit_b16_matches():
    reference = randomize(timm.create_model("vit_base_patch16_224", pretrained=False), std=0.02)
    model = _convert(reference, num_heads=12)
    assert model.count_params() == sum(p.numel() for p in reference.parameters())
    x, x_torch = images((1, 224, 224, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE
