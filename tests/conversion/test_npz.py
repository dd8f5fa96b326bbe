"""Original ViT .npz checkpoints: keras_vit equals timm's own .npz loader."""

import numpy as np
import pytest

from keras_vit.conversion import load_npz
from keras_vit.conversion import load_npz_weights
from keras_vit.conversion import vit_config_from_npz
from layer_checks import to_np
from npz_fixtures import CLASSES
from npz_fixtures import D
from npz_fixtures import HEADS
from npz_fixtures import LAYERS
from npz_fixtures import MLP
from npz_fixtures import PATCH
from npz_fixtures import write_original_npz
from reference_models import images
from reference_models import keras_model
from reference_models import max_abs_diff

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")


def test_config_is_read_off_the_arrays(tmp_path):
    write_original_npz(tmp_path / "vit.npz", pre_logits=True)
    config = vit_config_from_npz(load_npz(tmp_path / "vit.npz"))
    assert config["backbone"]["num_heads"] == HEADS and config["backbone"]["mlp_dim"] == MLP
    assert config["backbone"]["image_shape"] == (30, 30, 3) and config["backbone"]["gelu_approximate"]
    assert config["classifier"] == {"num_classes": CLASSES, "pooling": "token", "representation_size": D}


def test_logits_match_timm_npz_loader(tmp_path):
    path = str(tmp_path / "vit.npz")
    write_original_npz(path)
    reference = timm.models.vision_transformer.VisionTransformer(
        img_size=30, patch_size=PATCH, embed_dim=D, depth=LAYERS, num_heads=HEADS,
        mlp_ratio=MLP / D, num_classes=CLASSES,
    )
    timm.models.vision_transformer._load_weights(reference, path)
    reference.eval()
    config = vit_config_from_npz(load_npz(path))
    config["backbone"]["gelu_approximate"] = False  # timm runs these weights with exact GELU
    model = load_npz_weights(keras_model(config), load_npz(path))
    x, x_torch = images((2, 30, 30, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= 1e-4


def test_pre_logits_load_and_are_dropped_when_absent(tmp_path):
    arrays = write_original_npz(tmp_path / "vit.npz", pre_logits=True)
    config = vit_config_from_npz(arrays)
    model = load_npz_weights(keras_model(config), arrays)
    np.testing.assert_array_equal(to_np(model.get_layer("pre_logits").kernel), arrays["pre_logits/kernel"])
    config["classifier"]["representation_size"] = None  # fine-tuning drops pre_logits
    load_npz_weights(keras_model(config), arrays)


def test_mismatch_names_the_key(tmp_path):
    arrays = write_original_npz(tmp_path / "vit.npz")
    config = vit_config_from_npz(arrays)
    config["classifier"]["num_classes"] = 7
    with pytest.raises(ValueError, match="head/kernel"):
        load_npz_weights(keras_model(config), arrays)


def test_hybrid_npz_matches_timm_npz_loader(tmp_path):
    from functools import partial

    from timm.layers import HybridEmbed
    from timm.models.vision_transformer_hybrid import _resnetv2

    path = str(tmp_path / "R50-tiny.npz")
    write_original_npz(path, hybrid_layers=(1, 2), grid=6)  # 48 px / stride 8
    reference = timm.models.vision_transformer.VisionTransformer(
        img_size=48, patch_size=1, embed_dim=D, depth=LAYERS, num_heads=HEADS,
        mlp_ratio=MLP / D, num_classes=CLASSES,
        embed_layer=partial(HybridEmbed, backbone=_resnetv2(layers=(1, 2))),
    )
    timm.models.vision_transformer._load_weights(reference, path)
    reference.eval()
    arrays = load_npz(path)
    config = vit_config_from_npz(arrays)
    assert config["backbone"]["hybrid_layers"] == (1, 2)
    assert config["backbone"]["image_shape"] == (48, 48, 3)
    config["backbone"]["gelu_approximate"] = False
    model = load_npz_weights(keras_model(config), arrays)
    x, x_torch = images((2, 48, 48, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    assert max_abs_diff(model(x), expected) <= 1e-4
