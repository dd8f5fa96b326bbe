"""The dense-prediction recipes (DPT depth, segmentation) and their embedded
scenes: geometry of the generated depth, smoke runs that write everything,
the baselines against numpy, and the tensorflow-datasets paths on
tfds' mock data (never the network)."""

import json
import os

import numpy as np
import pytest

from keras_vit import DPTDepthEstimator
from keras_vit import cli
from keras_vit import DPTImageSegmenter
from keras_vit.data.scenes import SCENE_CLASSES
from keras_vit.data.scenes import make_scenes
from recipes import dpt_depth
from recipes import segmentation


def test_scenes_are_deterministic_and_their_depth_is_ray_cast_geometry():
    images, depth, labels = make_scenes(12, 40, max_objects=3, seed=3)
    again = make_scenes(12, 40, max_objects=3, seed=3)
    np.testing.assert_array_equal(images, again[0])
    np.testing.assert_array_equal(depth, again[1])
    assert np.any(make_scenes(12, 40, seed=4)[0] != images)
    assert images.dtype == np.uint8 and depth.dtype == np.float32 and labels.dtype == np.int32
    assert np.all(np.isfinite(depth)) and 0.5 < depth.min() and depth.max() < 12
    assert set(np.unique(labels)) == set(range(len(SCENE_CLASSES)))
    wall, floor = SCENE_CLASSES.index("wall"), SCENE_CLASSES.index("floor")
    for i in range(12):
        for row in range(40):
            for cls in (wall, floor):
                # The camera only pitches: the wall's and the floor's
                # camera-frame depth depends on the row alone.
                values = depth[i, row][labels[i, row] == cls]
                if values.size:
                    assert np.ptp(values) < 1e-4 * values.max(), (i, row, cls)
            # Objects stand in front of the wall.
            things = depth[i, row][labels[i, row] >= 2]
            walls = depth[i, row][labels[i, row] == wall]
            if things.size and walls.size:
                assert things.max() < walls.min()
        # The floor gets nearer towards the bottom of the image; the wall is above it.
        floor_rows = [depth[i, r][labels[i, r] == floor].mean() for r in range(40) if (labels[i, r] == floor).any()]
        assert np.all(np.diff(floor_rows) < 0)
        assert np.nonzero(labels[i] == wall)[0].min() < np.nonzero(labels[i] == floor)[0].min()
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        make_scenes(2, 0)


def test_depth_smoke_run_writes_everything_and_the_baseline_is_right(tmp_path):
    config, _ = dpt_depth.parse_args(["--smoke"])
    output = str(tmp_path / "depth")
    results = dpt_depth.run(config, output, verbose=0)
    for name in ("depth.png", "training_curve.png"):
        assert os.path.getsize(os.path.join(output, name)) > 1000, name
    with open(os.path.join(output, "results.json")) as f:
        assert json.load(f)["depth_metrics"] == results["depth_metrics"]
    model = DPTDepthEstimator.from_preset(os.path.join(output, "preset"))
    assert model.depth_scale == 1.0 and model.depth_shift == 0.05
    # keras-vit evaluate on the saved preset: the run's own test set and metrics.
    assert cli.main(["evaluate", os.path.join(output, "preset"), "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert evaluated == pytest.approx(results["depth_metrics"], rel=1e-5)
    # The baseline: the training mean everywhere, AbsRel per image then averaged.
    (_, train_depth), (_, test_depth) = dpt_depth.load_data(config)
    mean = train_depth[train_depth > 0].astype("float64").mean()
    abs_rel = np.mean([np.mean(np.abs(d - mean) / d) for d in test_depth])
    assert abs(results["baseline"]["abs_rel"] - abs_rel) <= 1e-5
    assert results["abs_rel_vs_baseline"] == pytest.approx(abs_rel / results["depth_metrics"]["abs_rel"], rel=1e-5)


def test_depth_head_starts_at_the_training_mean():
    config, _ = dpt_depth.parse_args(["--smoke", "--image-size", "32"])
    model = dpt_depth.build_model(config, initial_depth=4.2)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(dpt_depth.predict(model, images, 2), 4.2, rtol=1e-5)
    with pytest.raises(ValueError, match="lower depth_shift"):
        dpt_depth.build_model({**config, "depth_shift": 0.5}, initial_depth=4.2)


def test_segmentation_smoke_run_writes_everything_and_the_baseline_is_right(tmp_path):
    config, _ = segmentation.parse_args(["--smoke", "--image-size", "32"])
    output = tmp_path / "segmentation"
    results = segmentation.run(config, str(output), verbose=0)
    for name in ("masks.png", "training_curve.png"):
        assert os.path.getsize(output / name) > 1000, name
    model = DPTImageSegmenter.from_preset(str(output / "preset"))
    assert model.num_classes == len(SCENE_CLASSES)
    assert json.loads((output / "results.json").read_text())["metrics"] == results["metrics"]
    assert cli.main(["evaluate", str(output / "preset"), "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert evaluated == pytest.approx(results["metrics"], rel=1e-5)
    # The majority-class baseline, by numpy: IoU of that class, 0 for the others present.
    (_, labels), (_, test_labels), _ = segmentation.load_data(config)
    majority = np.bincount(labels.ravel()).argmax()
    present = np.unique(test_labels)
    iou = np.mean([(test_labels == majority).mean() if c == majority else 0.0 for c in present])
    assert abs(results["baseline"]["mean_iou"] - iou) <= 1e-6
    assert abs(results["baseline"]["pixel_accuracy"] - (test_labels == majority).mean()) <= 1e-6


def test_segmenter_models_in_the_segmentation_recipe(tmp_path):
    """`--model segmenter` trains Segmenter's mask transformer (8-pixel
    patches unless given); `segmenter_linear` is the linear decoder on the
    same encoder; `--optimizer sgd` is the official schedule."""
    from keras_vit import Segmenter

    config, _ = segmentation.parse_args(["--smoke", "--image-size", "32", "--model", "segmenter", "--optimizer", "sgd"])
    results = segmentation.run(config, str(tmp_path / "segmenter"), verbose=0)
    assert results["model"] == "segmenter" and np.isfinite(results["history"][0]["loss"])
    model = Segmenter.from_preset(str(tmp_path / "segmenter" / "preset"))
    assert model.decoder == "mask_transformer" and model.backbone.patch_size == (8, 8)
    assert model.backbone.layer_norm_epsilon == 1e-5
    linear = segmentation.build_model({**config, "model": "segmenter_linear"}, 4)
    assert linear.decoder == "linear" and linear.backbone.hidden_dim == model.backbone.hidden_dim
    optimizer = segmentation.optimizer(config, 10)
    assert optimizer.nesterov and optimizer.momentum == 0.9
    with pytest.raises(ValueError, match="optimizer must be one of"):
        segmentation.optimizer({**config, "optimizer": "adam"}, 10)


def test_recipes_refuse_bad_arguments():
    config, _ = segmentation.parse_args(["--smoke", "--dataset", "voc"])
    with pytest.raises(ValueError, match=r"dataset must be 'scenes', 'tfds:NAME' or 'folder:PATH'.*'voc'"):
        segmentation.load_data(config)
    with pytest.raises(ValueError, match=r"model must be one of .*'nope'"):
        segmentation.build_model({**config, "model": "nope"}, 4)
    with pytest.raises(SystemExit):
        segmentation.parse_args(["--model", "nope"])
    with pytest.raises(SystemExit):
        dpt_depth.parse_args(["--epochs", "0"])
    with pytest.raises(ValueError, match="num_layers must be at least 4"):
        dpt_depth.build_model({**dpt_depth.parse_args(["--smoke"])[0], "num_layers": 3})


@pytest.mark.one_backend(
    "torch", "the tfds reading is tf.data, the same on every backend (the smoke-run tests train each task on each one)"
)
def test_ade20k_through_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config, _ = segmentation.parse_args(
        ["--smoke", "--dataset", "tfds:scene_parse150", "--image-size", "32", "--batch-size", "2"]
    )
    with tfds.testing.mock_data(num_examples=4):
        train, test, names = segmentation.load_data(config)
        images, labels = next(iter(train))
        assert len(names) == 150
        assert tuple(images.shape) == (2, 32, 32, 3) and tuple(labels.shape) == (2, 32, 32)
        labels = np.asarray(labels)
        assert np.all((labels == 255) | ((labels >= 0) & (labels < 150)))
        results = segmentation.run(config, str(tmp_path / "ade"), verbose=0)
    assert results["dataset"] == "tfds:scene_parse150" and np.isfinite(results["history"][0]["loss"])


@pytest.mark.one_backend(
    "torch", "the tfds reading is tf.data, the same on every backend (the smoke-run tests train each task on each one)"
)
def test_nyu_depth_through_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    depth_config, _ = dpt_depth.parse_args(
        ["--smoke", "--dataset", "tfds:nyu_depth_v2", "--image-size", "32", "--batch-size", "2"]
    )
    with tfds.testing.mock_data(num_examples=4):
        train, test = dpt_depth.load_data(depth_config)
        images, depth = next(iter(train))
        assert tuple(images.shape) == (2, 32, 32, 3) and tuple(depth.shape) == (2, 32, 32)
        results = dpt_depth.run(depth_config, str(tmp_path / "nyu"), verbose=0)
    assert results["dataset"] == "tfds:nyu_depth_v2" and np.isfinite(results["history"][0]["loss"])


def test_ade20k_defaults_by_model():
    for model, expected in (("segmenter", (512, 8, 8)), ("segmenter_linear", (512, 8, 8)), ("dpt", (480, 8, 16))):
        config, _ = segmentation.parse_args(["--dataset", "tfds:scene_parse150", "--model", model])
        config = segmentation.resolve_config(config)
        assert (config["image_size"], config["batch_size"], config["patch_size"]) == expected, model
    config, _ = segmentation.parse_args(["--dataset", "tfds:scene_parse150", "--model", "segmenter", "--image-size", "256"])
    assert segmentation.resolve_config(config)["image_size"] == 256


def test_ade20k_labels_map_to_zero_based_classes_with_zero_ignored():
    tf = pytest.importorskip("tensorflow")
    from recipes import dense_common

    annotation = np.array([[0, 1, 150], [151, 7, 0]], "uint8")[..., None].repeat(3, -1)
    example = {"image": tf.zeros((2, 3, 3), "uint8"), "annotation": tf.constant(annotation)}
    labels = dense_common._ade_labels(example, 150)
    np.testing.assert_array_equal(np.asarray(labels)[..., 0], [[255, 0, 149], [255, 6, 255]])
