"""keras_vit equals transformers' ViTModel / ViTForImageClassification (random weights)."""

import pytest

from keras_vit.conversion import load_transformers_state_dict
from keras_vit.conversion import vit_config_from_transformers
from keras_vit.presets.vit_presets import transfer_weights
from reference_models import images
from reference_models import keras_model
from reference_models import max_abs_diff
from reference_models import randomize

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TOLERANCE = 1e-4


def _tiny_config(**kwargs):
    args = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=30, patch_size=3, num_labels=5,
    )
    args.update(kwargs)
    return transformers.ViTConfig(**args)


def _classifier(**kwargs):
    return randomize(transformers.ViTForImageClassification(_tiny_config(**kwargs)))


def _convert(reference, state_dict=None, **classifier):
    config = vit_config_from_transformers(reference.config)
    config["classifier"].update(classifier)
    model = keras_model(config)
    load_transformers_state_dict(model, state_dict or reference.state_dict())
    return model


def test_tiny_classifier_matches_v5_names():
    reference = _classifier()
    assert any(".q_proj." in k for k in reference.state_dict())  # 5.x in-memory names
    model = _convert(reference)
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).logits
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_tiny_classifier_matches_from_saved_safetensors(tmp_path):
    reference = _classifier()
    reference.save_pretrained(tmp_path)
    state_dict = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    assert any(".attention.attention.query." in k for k in state_dict)  # legacy hub names
    model = _convert(reference, state_dict)
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).logits
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_vit_model_tokens_and_pooler_match():
    reference = randomize(transformers.ViTModel(_tiny_config(), add_pooling_layer=True))
    model = _convert(reference, num_classes=0, representation_size=32)
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        out = reference(pixel_values=x_torch)
    assert max_abs_diff(model.backbone(x), out.last_hidden_state) <= TOLERANCE
    assert max_abs_diff(model(x), out.pooler_output) <= TOLERANCE


def test_tanh_gelu_config():
    reference = _classifier(hidden_act="gelu_pytorch_tanh")
    model = _convert(reference)
    assert model.backbone.gelu_approximate
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).logits
    assert max_abs_diff(model(x), expected) <= TOLERANCE


def test_interpolate_pos_encoding_matches():
    reference = _classifier()
    model = _convert(reference)
    config = vit_config_from_transformers(reference.config)
    config["backbone"]["image_shape"] = (36, 42, 3)
    resized = keras_model(config)
    transfer_weights(model, resized, antialias=False)  # HF: bicubic, no antialias
    x, x_torch = images((2, 36, 42, 3), seed=5)
    with torch.no_grad():
        expected = reference(pixel_values=x_torch, interpolate_pos_encoding=True).logits
    assert max_abs_diff(resized(x), expected) <= TOLERANCE


@pytest.mark.slow
def test_full_vit_b16_matches():
    config = transformers.ViTConfig(num_labels=1000)
    reference = randomize(transformers.ViTForImageClassification(config), std=0.02)
    model = _convert(reference)
    assert model.count_params() == sum(p.numel() for p in reference.parameters())
    x, x_torch = images((1, 224, 224, 3))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).logits
    assert max_abs_diff(model(x), expected) <= TOLERANCE
