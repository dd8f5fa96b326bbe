import json
import os

import numpy as np
import pytest

from keras_vit import DETR
from keras_vit.data.shapes import make_shapes
from recipes import detr_detection


def test_shapes_are_deterministic_and_boxes_are_tight():
    images, targets = make_shapes(20, 48, max_objects=3, seed=5)
    again, same = make_shapes(20, 48, max_objects=3, seed=5)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(targets["boxes"], same["boxes"])
    other, _ = make_shapes(20, 48, max_objects=3, seed=6)
    assert np.any(other != images)
    valid = targets["labels"] >= 0
    assert np.all(valid.sum(1) >= 1) and np.all(targets["labels"][~valid] == -1)
    boxes = targets["boxes"][valid]
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert boxes.min() >= 0 and boxes.max() <= 48
    # The last object drawn on each image is unoccluded: its box edges touch
    # its pixels, so the box rows/columns just outside it differ from inside.
    for i in range(20):
        j = int(valid[i].sum()) - 1
        x0, y0, x1, y1 = targets["boxes"][i, j].astype(int)
        patch = images[i, y0:y1, x0:x1].astype(float)
        assert patch.mean() > images[i].astype(float).mean() - 1  # shapes are brighter than the background
    with pytest.raises(ValueError, match="max_objects must be a positive int"):
        make_shapes(2, 32, max_objects=0)


def test_smoke_run_writes_everything(tmp_path):
    config, _ = detr_detection.parse_args(["--smoke"])
    output = str(tmp_path / "run")
    results = detr_detection.run(config, output, verbose=0)
    assert set(results["coco"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    for name in ("detections.png", "training_curve.png"):
        assert os.path.getsize(os.path.join(output, name)) > 1000, name
    with open(os.path.join(output, "results.json")) as f:
        assert json.load(f)["coco"]["AP"] == results["coco"]["AP"]
    model = DETR.from_preset(os.path.join(output, "preset"))
    assert model.num_classes == 3 and model.bounding_box_format == "xyxy"
    # keras-vit evaluate on the saved preset: the run's own test set and COCO metrics.
    from keras_vit import cli

    assert cli.main(["evaluate", os.path.join(output, "preset"), "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert evaluated == pytest.approx({k: float(v) for k, v in results["coco"].items()}, abs=1e-6)


@pytest.mark.one_backend(
    "torch",
    "the recipe only calls keras_vit.tuning, whose frozen weights are checked on every backend in tests/tuning",
)
def test_a_preset_fine_tunes_as_the_original_detr(tmp_path):
    """--preset: the stem and layer1 stay frozen, the backbone learns at 1e-5, the transformer at 1e-4."""
    from keras_vit import ResNetBackbone
    from layer_checks import to_np

    preset = DETR(
        ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(16, 16, 32, 32)), num_classes=3, num_queries=5,
        hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=16, bounding_box_format="xyxy",
    )
    preset(np.zeros((1, 32, 32, 3), "float32"))
    preset.save_to_preset(str(tmp_path / "base"))
    config, output = detr_detection.parse_args(
        ["--smoke", "--preset", str(tmp_path / "base"), "--output", str(tmp_path / "run")]
    )
    assert config["learning_rate"] == 1e-4 and config["backbone_learning_rate"] == 1e-5
    detr_detection.run(config, output, verbose=0)
    tuned = DETR.from_preset(os.path.join(output, "preset"))
    for name in ("conv1", "layer1_0_conv1", "layer2_0_conv1"):
        before = to_np(preset.backbone.get_layer(name).kernel)
        after = to_np(tuned.backbone.get_layer(name).kernel)
        assert np.array_equal(before, after) == (name != "layer2_0_conv1"), name


@pytest.mark.one_backend("torch", "DETR on Swin trains with fit on every backend in tests/models/test_swin.py")
def test_a_new_detr_on_a_swin_backbone(tmp_path):
    """--backbone: the transformer is new, the Swin keeps its preset weights
    (any input size) and trains at the backbone learning rate."""
    from keras_vit import Swin
    from keras_vit import SwinBackbone
    from layer_checks import to_np

    swin = Swin(SwinBackbone(image_shape=(96, 96, 3), hidden_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2), window_size=3), 4)
    swin.save_to_preset(str(tmp_path / "swin"))
    config, output = detr_detection.parse_args(
        ["--smoke", "--backbone", str(tmp_path / "swin"), "--output", str(tmp_path / "run"), "--num-train", "32"]
    )
    model = detr_detection.build_model(config, 3)
    assert model.backbone.image_shape == (None, None, 3)
    kernel = "stage_1_block_0"
    np.testing.assert_array_equal(to_np(model.backbone.get_layer(kernel).fc1.kernel), to_np(swin.backbone.get_layer(kernel).fc1.kernel))
    detr_detection.run(config, output, verbose=0)
    tuned = DETR.from_preset(os.path.join(output, "preset"))
    assert type(tuned.backbone).__name__ == "SwinBackbone"
    with pytest.raises(ValueError, match="multi-scale backbone, one of .*swin_t"):
        detr_detection.pyramid_backbone("vit_b16")
    with pytest.raises(SystemExit):
        detr_detection.parse_args(["--backbone", "swin_t", "--preset", "detr_r50"])


@pytest.mark.one_backend("torch", "recipe glue (the backbone's preset, the folder pipeline); DETR on ViTDet trains on every backend in tests/models/test_vitdet.py")
def test_detr_on_a_vitdet_preset_trains_on_a_coco_folder(tmp_path):
    """--backbone DIR of a ViTDet preset: built at --image-size (its input is
    fixed), its weights kept, trained on a COCO folder; --backbone vitdet: a
    small one from scratch, no backbone learning rate."""
    from keras_vit import ViTDetBackbone
    from keras_vit.data.shapes import SHAPE_CLASSES
    from layer_checks import to_np
    from recipes import folder_data

    backbone = ViTDetBackbone(
        image_shape=(96, 96, 3), patch_size=8, hidden_dim=16, num_layers=2, num_heads=2, window_size=3,
        global_attention_blocks=(1,), pyramid_dim=16,
    )
    backbone.save_to_preset(str(tmp_path / "vitdet"))
    data = {"train2017": make_shapes(6, 48, 2, seed=1), "val2017": make_shapes(4, 48, 2, seed=2)}
    folder_data.write_coco(str(tmp_path / "coco"), data, list(SHAPE_CLASSES))
    config, output = detr_detection.parse_args([
        "--smoke", "--backbone", str(tmp_path / "vitdet"), "--dataset", f"folder:{tmp_path / 'coco'}",
        "--image-size", "64", "--batch-size", "2", "--hidden-dim", "16", "--ffn-dim", "16", "--output", str(tmp_path / "run"),
    ])
    model = detr_detection.build_model(config, 3)
    assert model.backbone.image_shape == (64, 64, 3)
    np.testing.assert_array_equal(
        to_np(model.backbone.get_layer("block_1").fc1.kernel), to_np(backbone.get_layer("block_1").fc1.kernel)
    )
    results = detr_detection.run(config, output, verbose=0)
    assert 0.0 <= results["coco"]["AP"] <= 1.0
    assert type(DETR.from_preset(os.path.join(output, "preset")).backbone).__name__ == "ViTDetBackbone"
    scratch, _ = detr_detection.parse_args(["--smoke", "--backbone", "vitdet"])
    model = detr_detection.build_model(scratch, 3)
    assert model.backbone.patch_size == 8 and model.backbone.image_shape == (96, 96, 3)
    assert not detr_detection.pretrained_backbone(scratch)


def test_bad_dataset_name():
    config, _ = detr_detection.parse_args(["--smoke", "--dataset", "voc"])
    with pytest.raises(ValueError, match=r"dataset must be 'shapes', 'tfds:NAME' or 'folder:PATH'.*'voc'"):
        detr_detection.load_data(config)


@pytest.mark.one_backend(
    "torch", "the tfds reading is tf.data, the same on every backend (the smoke-run tests train each task on each one)"
)
def test_coco_tfds_path_with_mock_data(tmp_path):
    """The COCO 2017 path through tensorflow-datasets (augmentation, padding,
    masks), on tfds' mock data (no network)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    config, _ = detr_detection.parse_args(
        ["--smoke", "--dataset", "tfds:coco/2017", "--image-size", "64", "--batch-size", "2"]
    )
    with tfds.testing.mock_data(num_examples=4):
        train, test, names = detr_detection.load_data(config)
        x, y = next(iter(train))
        assert len(names) == 80
        assert tuple(x["images"].shape) == (2, 64, 64, 3) and tuple(x["pixel_mask"].shape) == (2, 64, 64)
        boxes, labels = np.asarray(y["boxes"]), np.asarray(y["labels"])
        real = labels >= 0
        # (mock boxes are random numbers, not ordered corners)
        assert np.all(boxes[~real] == 0) and boxes.min() >= -1e-3 and boxes.max() <= 64 + 1e-3
        results = detr_detection.run({**config, "num_queries": 100}, str(tmp_path / "coco"), verbose=0)
    assert results["dataset"] == "tfds:coco/2017" and np.isfinite(results["loss"][0])
