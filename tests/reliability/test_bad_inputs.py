"""Bad input to each public entry point fails loudly, naming what is wrong and what to do."""

import json
import shutil

import numpy as np
import pytest

import keras_vit
from keras_vit import DETR
from keras_vit import ViT
from keras_vit import ViTBackbone

TINY = dict(image_shape=(30, 30, 3), patch_size=3, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37)


def _vit(**kwargs):
    return ViT(ViTBackbone(**TINY), num_classes=5, preprocessor=keras_vit.ViTImagePreprocessor(30), **kwargs)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: ViTBackbone(**TINY, hiden_dim=32), TypeError, r"unknown keyword argument\(s\) \['hiden_dim'\]"),
        (lambda: ViT(ViTBackbone(**TINY), num_clases=3), TypeError, r"\['num_clases'\]"),
        (lambda: keras_vit.ResNetBackbone(depth=50, dilate=True), TypeError, r"\['dilate'\]"),
        (lambda: DETR(keras_vit.ResNetBackbone((1, 1, 1, 1)), no_object_weight=-0.1), ValueError, "no_object_weight"),
        (lambda: DETR(keras_vit.ResNetBackbone((1, 1, 1, 1)), no_object_weight=float("nan")), ValueError, "no_object_weight"),
    ],
)
def test_constructors(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_numpy_integers_are_integers():
    model = ViT(ViTBackbone(**{**TINY, "hidden_dim": np.int64(32)}), num_classes=np.int64(10))
    assert model.num_classes == 10 and isinstance(model.num_classes, int)


def _saved(tmp_path):
    model = _vit()
    model.save_to_preset(tmp_path / "preset")
    return tmp_path / "preset"


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: (d / "config.json").write_text(""), r"config.json is not valid JSON"),
        (lambda d: (d / "config.json").write_text('{"registered_name": "keras_vit>ViT", "con'), r"config.json is not valid JSON"),
        (lambda d: (d / "config.json").write_text('{"model_type": "vit", "hidden_size": 32}'), r"not a keras_vit preset config.*hidden_size"),
        (lambda d: (d / "model.weights.h5").write_bytes((d / "model.weights.h5").read_bytes()[:4000]), r"truncated"),
    ],
)
def test_damaged_preset_directories(tmp_path, damage, match):
    directory = _saved(tmp_path)
    damage(directory)
    with pytest.raises(ValueError, match=match):
        ViT.from_preset(str(directory))


def test_same_size_changed_weights_are_refused_by_their_digest(tmp_path):
    """A weights file of the very same size with other values (one weight
    changed in place): caught by metadata.json's sha256 before Keras reads it."""
    directory = _saved(tmp_path)
    path = directory / "model.weights.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.weights.h5 has sha256 [0-9a-f]{64} but metadata.json records .* changed or replaced"):
        ViT.from_preset(str(directory))


def test_a_missing_preprocessor_file_is_refused(tmp_path):
    directory = _saved(tmp_path)
    (directory / "preprocessor.json").unlink()
    with pytest.raises(ValueError, match=r"written with a preprocessor \(preprocessor.json\), which is missing: without it raw pixels"):
        ViT.from_preset(str(directory))
    # A task saved without one loads without one.
    ViT(ViTBackbone(**TINY), num_classes=5).save_to_preset(tmp_path / "bare")
    assert ViT.from_preset(str(tmp_path / "bare")).preprocessor is None


def test_unknown_key_in_a_hand_edited_config(tmp_path):
    directory = _saved(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["config"]["backbone"]["config"]["hiden_dim"] = 64
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match=r"\['hiden_dim'\]"):
        ViT.from_preset(str(directory))


def test_weights_of_a_deeper_model_do_not_load_into_a_shallower_one(tmp_path):
    deep = ViT(ViTBackbone(**{**TINY, "num_layers": 3}), num_classes=5)
    deep.save_to_preset(tmp_path / "deep")
    shallow = _saved(tmp_path)
    shutil.copy(tmp_path / "deep" / "model.weights.h5", shallow / "model.weights.h5")
    (shallow / "metadata.json").unlink()  # no size record to catch it earlier
    with pytest.raises(ValueError, match=r"holds 44 tensors but the architecture being built has 32"):
        ViT.from_preset(str(shallow))


def test_checkpoint_files(tmp_path):
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError, match=r"random.safetensors as safetensors .* Download it again"):
        ViT.from_preset(str(tmp_path / "random.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: .*missing.pth"):
        ViT.from_preset(str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((0, 30, 30, 3), "uint8"), "empty"),
        (np.zeros((2, 30, 30, 4), "uint8"), "3 channels"),
    ],
)
def test_vit_predict(images, match):
    model = _vit()
    with pytest.raises(ValueError, match=match):
        model.predict(images, verbose=0)


def _detr():
    return DETR(keras_vit.ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(16, 16, 32, 32)),
                num_classes=3, num_queries=5, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=19)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m: m.predict_detections(np.zeros((0, 64, 64, 3), "float32")), ValueError, "empty"),
        (lambda m: m.predict_detections(np.zeros((1, 64, 64, 4), "float32")), ValueError, r"\(batch, height, width, 3\)"),
        (lambda m: m.predict_detections(np.zeros((1, 64, 64, 3), "float32"), pixel_mask=np.ones((1, 32, 64))), ValueError, "pixel_mask must have shape"),
        (lambda m: m.predict_detections([np.zeros((64, 64, 3)), np.zeros((32, 48, 3))]), TypeError, "not a Python list"),
        (lambda m: m.predict_detections(np.zeros((1, 64, 64, 3), "float32"), score_threshold=1.5), ValueError, "score_threshold"),
        (lambda m: m.predict_detections(np.zeros((1, 64, 64, 3), "float32"), score_threshold=float("nan")), ValueError, "score_threshold"),
    ],
)
def test_detr_predict(call, error, match):
    model = _detr()
    good = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    before = model.predict_detections(good)["scores"]
    with pytest.raises(error, match=match):
        call(model)
    # The model still works after a rejected call (on JAX a failure inside the
    # predict step used to leave the variables detached).
    np.testing.assert_allclose(model.predict_detections(good)["scores"], before, atol=1e-6)


@pytest.mark.parametrize(
    "argv",
    [["train", "--batch-size", "0"], ["train", "--learning-rate", "nan"], ["detect", "--epochs", "-1"], ["train", "--learning-rate", "inf"]],
)
def test_recipe_options_fail_with_a_one_line_message(argv, capsys):
    from keras_vit.cli import main

    assert main(argv) == 2  # argparse's exit code, returned by the command
    err = capsys.readouterr().err
    assert "expected a" in err and "Traceback" not in err


def test_results_json_stays_strict(tmp_path):
    from keras_vit.utils.files import write_json_atomically

    with pytest.raises(ValueError, match="JSON has no NaN"):
        write_json_atomically(str(tmp_path / "results.json"), {"test_loss": float("nan")})
    assert not (tmp_path / "results.json").exists()
