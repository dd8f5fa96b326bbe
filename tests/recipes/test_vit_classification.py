import json
import os

import numpy as np
import pytest

import keras_vit
from keras_vit.data.digits import load_digits
from recipes import vit_classification


def test_digits_split_is_stratified_and_disjoint():
    (x_train, y_train), (x_test, y_test) = load_digits(image_size=16)
    assert x_train.shape[1:] == (16, 16, 1) and x_test.shape[1:] == (16, 16, 1)
    assert len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    counts = np.bincount(y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    train_rows = {row.tobytes() for row in x_train.reshape(len(x_train), -1)}
    overlap = sum(row.tobytes() in train_rows for row in x_test.reshape(len(x_test), -1))
    assert overlap < 5  # the set has a few duplicate scans, nothing more


@pytest.mark.one_backend("torch", "Swin trains with fit on every backend in tests/models/test_swin.py")
def test_swin_architecture_trains_evaluates_and_predicts(tmp_path):
    config, _ = vit_classification.parse_args(["--smoke", "--architecture", "swin", "--num-layers", "3"])
    output = str(tmp_path / "run")
    results = vit_classification.run(config, output, verbose=0)
    assert np.isfinite(results["test_loss"]) and "attention_png" not in results
    model = keras_vit.Swin.from_preset(os.path.join(output, "preset"))
    assert model.backbone.depths == (2, 1) and model.backbone.num_heads == (4, 8)
    from keras_vit import cli

    assert cli.main(["evaluate", os.path.join(output, "preset"), "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["metrics"]["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)


def test_smoke_run_writes_everything(tmp_path):
    config, _ = vit_classification.parse_args(["--smoke"])
    output = str(tmp_path / "run")
    results = vit_classification.run(config, output, verbose=0)
    assert 0.0 <= results["test_accuracy"] <= 1.0 and np.isfinite(results["test_loss"])
    for name in ("results.json", "attention_maps.png", "training_curve.png"):
        assert os.path.isfile(os.path.join(output, name)), name
    # The backup is gone once every output is in place.
    assert not os.path.exists(os.path.join(output, "backup"))
    with open(os.path.join(output, "results.json")) as f:
        assert json.load(f)["test_accuracy"] == results["test_accuracy"]
    model = keras_vit.ViT.from_preset(os.path.join(output, "preset"))
    assert model.backbone.image_shape == (16, 16, 1)
    # keras-vit evaluate on the saved preset: the run's own test set and metrics.
    from keras_vit import cli

    assert cli.main(["evaluate", os.path.join(output, "preset"), "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["dataset"] == "digits" and evaluated["images"] == 359  # 20% of each class
    assert evaluated["metrics"]["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)
    assert evaluated["metrics"]["loss"] == pytest.approx(results["test_loss"], rel=1e-5)
    # The Figure 7 recipe runs on any saved preset.
    from recipes import figure7

    paths = figure7.run(os.path.join(output, "preset"), str(tmp_path / "figure7"), count=4)
    assert sorted(paths) == ["distance", "filters", "positions", "rollout"]
    assert all(os.path.getsize(p) > 1000 for p in paths.values())


def test_bad_dataset_name():
    config, _ = vit_classification.parse_args(["--smoke", "--dataset", "mnist"])
    with pytest.raises(ValueError, match=r"dataset must be 'digits', 'digits:A-B', 'tfds:NAME' or 'folder:PATH'.*'mnist'"):
        vit_classification.load_data(config)


def test_tfds_path_with_mock_data(tmp_path):
    """The tensorflow-datasets path, on tfds' own mock data (no network)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    config, _ = vit_classification.parse_args(
        ["--smoke", "--dataset", "tfds:mnist", "--image-size", "14", "--batch-size", "8"]
    )
    with tfds.testing.mock_data(num_examples=24):
        results = vit_classification.run(config, str(tmp_path / "tfds"), verbose=0)
    assert results["dataset"] == "tfds:mnist" and np.isfinite(results["test_loss"])


def test_mixed_precision_and_distribute_options():
    from recipes.common import dtype_policy

    config, _ = vit_classification.parse_args(["--smoke", "--mixed-precision", "mixed_float16", "--distribute", "none"])
    assert dtype_policy(config) == "mixed_float16" and config["distribute"] == "none"
    config, _ = vit_classification.parse_args(["--smoke", "--mixed-precision"])
    assert dtype_policy(config) == "mixed_bfloat16"
    assert dtype_policy(vit_classification.parse_args(["--smoke"])[0]) is None
    assert dtype_policy({"mixed_precision": True}) == "mixed_bfloat16"  # configs of earlier runs
    with pytest.raises(SystemExit):
        vit_classification.parse_args(["--mixed-precision", "float8"])
    with pytest.raises(SystemExit):
        vit_classification.parse_args(["--distribute", "pipeline"])


@pytest.mark.one_backend("torch", "conversion numerics are tested on every backend in tests/models/test_swin.py")
def test_keras_vit_convert_takes_a_swin_checkpoint(tmp_path):
    from safetensors.numpy import save_file

    from keras_vit import cli

    path = tmp_path / "swin" / "model.safetensors"
    path.parent.mkdir()
    import timm

    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, embed_dim=6,
                                  depths=(1, 1), num_heads=(1, 3), window_size=4, num_classes=3)
    save_file({k: v.numpy() for k, v in reference.state_dict().items()}, str(path))
    assert cli.main(["convert", str(path), str(tmp_path / "out"), "--image-size", "32"]) == 0
    converted = keras_vit.Swin.from_preset(str(tmp_path / "out"))
    assert converted.backbone.depths == (1, 1) and converted.num_classes == 3
