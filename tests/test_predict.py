"""`keras-vit predict PRESET IMAGES...`: every task's predictions on image
files of different sizes are the task's own inference on those images
(`predict`, `post_process`, `predict_depth`, `predict_segmentation`),
written to predictions.json with one picture per image; a file that is not
an image, an empty folder and bad options are refused by name."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_vit import cli
from keras_vit.prediction import load_image
from test_export import _model

SIZES = [(23, 31), (40, 17)]  # odd, one wide and one tall


def _write_images(folder, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder / "nested")
    paths = []
    for i, (height, width) in enumerate(SIZES):
        pixels = rng.integers(0, 256, (height, width, 3), dtype="uint8")
        path = folder / ("nested" if i else "") / f"image{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("family", ["vit", "detr", "dpt_depth", "segmenter"])
def test_predict_writes_the_tasks_own_predictions(family, tmp_path, capsys):
    model = _model(family)
    if family == "detr":  # DETR takes any size: built by a first call
        model.predict({"images": np.zeros((1, 32, 32, 3), "float32")}, verbose=0)
    model.save_to_preset(str(tmp_path / "preset"))
    paths = _write_images(tmp_path / "images")
    output = tmp_path / "out"
    args = ["predict", str(tmp_path / "preset"), str(tmp_path / "images"), "--output", str(output)]
    if family == "detr":
        (tmp_path / "names.txt").write_text("circle\nsquare\ntriangle\n")
        args += ["--threshold", "0.0", "--image-size", "32", "--class-names", str(tmp_path / "names.txt")]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"wrote {output / 'predictions.json'} and 2 picture(s)")
    results = json.loads((output / "predictions.json").read_text())
    assert [r["file"] for r in results["images"]] == paths  # the folder searched recursively, in order
    for record, path in zip(results["images"], paths):
        image = load_image(path)
        assert (record["height"], record["width"]) == image.shape[:2]
        assert Image.open(output / record["picture"]).format == "PNG"
        if family == "vit":
            resized = keras.ops.image.resize(image[None], model.preprocessor.image_size, interpolation="bilinear")
            logits = keras.ops.convert_to_numpy(model.predict(keras.ops.convert_to_numpy(resized), verbose=0))[0]
            scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            assert [c["label"] for c in record["top_k"]] == list(np.argsort(-scores)[:5])
            np.testing.assert_allclose([c["score"] for c in record["top_k"]], np.sort(scores)[::-1][:5], atol=1e-5)
        elif family == "detr":
            # Shorter side 32, longer side at most 32 * 1333 / 800, as DETR's COCO setting.
            height, width = image.shape[:2]
            factor = min(32 / min(height, width), round(32 * 1333 / 800) / max(height, width))
            assert record["working_size"] == [round(height * factor), round(width * factor)]
            resized = keras.ops.image.resize(image[None], record["working_size"], interpolation="bilinear")
            outputs = model.predict({"images": keras.ops.convert_to_numpy(resized)}, verbose=0)
            expected = model.post_process(outputs, np.array([[height, width]], "float32"), 0.0, "xyxy")
            labels = keras.ops.convert_to_numpy(expected["labels"])[0]
            assert len(record["detections"]) == int((labels >= 0).sum()) == 5
            assert [d["name"] for d in record["detections"]] == [
                ["circle", "square", "triangle"][c] for c in labels[labels >= 0]
            ]
            np.testing.assert_allclose(
                [d["box_xyxy"] for d in record["detections"]],
                keras.ops.convert_to_numpy(expected["boxes"])[0][labels >= 0], atol=1e-3,
            )
        elif family == "dpt_depth":
            depth = np.load(output / record["depth"], allow_pickle=False)
            assert depth.shape == image.shape[:2]
            np.testing.assert_allclose(depth, model.predict_depth(image), atol=1e-5)
            assert record["mean"] == pytest.approx(float(depth.mean()), rel=1e-6)
        else:
            mask = np.asarray(Image.open(output / record["mask"]))
            np.testing.assert_array_equal(mask, model.predict_segmentation(image, mode="whole"))
            assert sum(record["class_shares"].values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_images_and_options_are_named(tmp_path, capsys):
    model = _model("vit")
    model.save_to_preset(str(tmp_path / "preset"))
    preset = str(tmp_path / "preset")
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", preset, str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 1
    assert "holds no image file" in capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert cli.main(["predict", preset, str(tmp_path / "broken.png"), "--output", str(tmp_path / "o")]) == 1
    assert f"{str(tmp_path / 'broken.png')!r} is not a readable image" in capsys.readouterr().err
    assert cli.main(["predict", preset, str(tmp_path / "missing.png")]) == 1
    assert "is neither an image file nor a folder" in capsys.readouterr().err
    assert cli.main(["predict", preset, str(tmp_path / "broken.png"), "--top-k", "0"]) == 2
    assert "--top-k must be a positive int, not 0" in capsys.readouterr().err
    assert cli.main(["predict", preset, str(tmp_path / "broken.png"), "--threshold", "1.5"]) == 2
    assert not os.path.exists(tmp_path / "o" / "predictions.json")


@pytest.mark.parametrize("family", ["vit", "detr", "dpt_depth", "segmenter"])
def test_benchmark_command_times_every_task(family, tmp_path, capsys):
    model = _model(family)
    if family == "detr":
        model.predict({"images": np.zeros((1, 32, 32, 3), "float32")}, verbose=0)
    model.save_to_preset(str(tmp_path / "preset"))
    args = ["benchmark", str(tmp_path / "preset"), "--batch-size", "2", "--steps", "2", "--warmup", "1",
            "--output", str(tmp_path / "speed.json")]
    # Training steps of every task in the torch tier (no compilation); ViT's on every backend.
    train = family == "vit" or keras.backend.backend() == "torch"
    if not train:
        args.append("--no-train")
    if family == "detr":
        assert cli.main(args) == 1  # DETR takes any size: it must be given
        assert "pass image_size=(height, width)" in capsys.readouterr().err
        args += ["--image-size", "40", "56"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "inference: " in out and ("training: " in out) == train
    speed = json.loads((tmp_path / "speed.json").read_text())
    assert speed["backend"] == keras.backend.backend() and speed["batch_size"] == 2
    assert speed["image_size"] == ([40, 56] if family == "detr" else [20, 28])
    assert speed["infer_images_per_s"] > 0 and (speed["train_images_per_s"] > 0 if train else "train_step_s" not in speed)
    assert speed["infer_images_per_s"] == pytest.approx(2 / speed["infer_step_s"])
    assert cli.main(["benchmark", str(tmp_path / "preset"), "--steps", "0"]) == 2
    assert "--steps must be a positive int, not 0" in capsys.readouterr().err
