"""Local folders as recipe data (`--dataset folder:PATH`): each task's layout
written from the embedded data, read back exactly through the recipe's own
tf.data pipeline, the COCO details (non-contiguous category ids, crowd
boxes, images without objects), loud failures on broken folders, and one
smoke run per recipe on a folder."""

import json
import os
import shutil

import numpy as np
import pytest

from keras_vit.data import load_digits
from keras_vit.data import make_scenes
from keras_vit.data import make_shapes
from recipes import dense_common
from recipes import detr_detection
from recipes import dpt_depth
from recipes import folder_data
from recipes import segmentation
from recipes import vit_classification


def _digits_folder(path, per_class=(4, 2), classes=3, size=16):
    (x, y), (xt, yt) = load_digits(image_size=size, seed=0)
    splits = {}
    for split, (images, labels), count in (("train", (x, y), per_class[0]), ("test", (xt, yt), per_class[1])):
        keep = np.concatenate([np.nonzero(labels == c)[0][:count] for c in range(classes)])
        splits[split] = (np.round(images[keep] * 255).astype("uint8"), labels[keep])
    names = [f"digit_{c}" for c in range(classes)]
    folder_data.write_classification(str(path), splits, names)
    return splits, names


def test_an_image_folder_tree_reads_back_exactly_with_its_class_names(tmp_path):
    splits, names = _digits_folder(tmp_path)
    config = {"image_size": 16, "seed": 0, "batch_size": 4}
    train, test, class_names, channels = folder_data.classification(str(tmp_path), config)
    assert class_names == names and channels == 1
    images, labels = zip(*test.as_numpy_iterator())
    # Test order: class folders sorted, files sorted, as written.
    np.testing.assert_array_equal(np.stack(images), splits["test"][0].astype("float32"))
    np.testing.assert_array_equal(labels, splits["test"][1])
    train_labels = sorted(int(label) for _, label in train.as_numpy_iterator())
    assert train_labels == sorted(splits["train"][1].tolist())

    # The recipe's pipeline: augmented training batches, whole test set.
    config = dict(vit_classification.CONFIG, dataset=f"folder:{tmp_path}", image_size=16, batch_size=4)
    train, test, num_classes, channels = vit_classification.load_data(config)
    assert (num_classes, channels) == (3, 1)
    batch_x, batch_y = next(iter(train))
    assert batch_x.shape == (4, 16, 16, 1) and batch_y.dtype == "int32"
    assert 0 <= float(np.min(batch_x)) and float(np.max(batch_x)) <= 255
    assert sum(int(x.shape[0]) for x, _ in test) == len(splits["test"][1])


def test_broken_image_folder_trees_fail_naming_what_is_wrong(tmp_path):
    config = {"image_size": 16, "seed": 0}
    with pytest.raises(ValueError, match=r"is not a folder.*folder:PATH"):
        folder_data.parse(f"folder:{tmp_path / 'missing'}")
    os.makedirs(tmp_path / "train" / "a")
    with pytest.raises(ValueError, match=r"needs a 'train' folder and one of \('test', 'val', 'validation'\)"):
        folder_data.classification(str(tmp_path), config)
    _digits_folder(tmp_path / "ok", classes=2)
    os.makedirs(tmp_path / "ok" / "test" / "digit_7")
    with pytest.raises(ValueError, match=r"has classes that .* does not: \['digit_7'\]"):
        folder_data.classification(str(tmp_path / "ok"), config)


def _coco_folder(path, size=48):
    train = make_shapes(5, size, 3, seed=1)
    test = make_shapes(4, size, 3, seed=2)
    names = ["rectangle", "ellipse", "triangle"]
    # COCO's ids are not contiguous (1..90 for 80 classes).
    folder_data.write_coco(str(path), {"train2017": train, "val2017": test}, names, category_ids=(3, 7, 11))
    # A crowd region and an image without objects in the evaluation split, as COCO has.
    file = path / "annotations" / "instances_val2017.json"
    coco = json.loads(file.read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 4]
    coco["annotations"].append({"id": 999, "image_id": 1, "category_id": 11, "bbox": [1, 2, 10, 12], "iscrowd": 1})
    file.write_text(json.dumps(coco))
    return train, test, names


def test_a_coco_folder_gives_the_boxes_and_labels_it_holds(tmp_path):
    size = 48
    train, test, names = _coco_folder(tmp_path, size)
    config = dict(detr_detection.CONFIG, dataset=f"folder:{tmp_path}", image_size=size, batch_size=2)
    _, examples, class_names = folder_data.detection(str(tmp_path), config)
    assert class_names == names
    examples = list(examples.as_numpy_iterator())
    assert len(examples) == 4
    for i, example in enumerate(examples):
        np.testing.assert_array_equal(example["image"], test[0][i])
        objects = example["objects"]
        real = test[1]["labels"][i] >= 0 if i != 3 else np.zeros(3, bool)  # image 4 lost its objects
        crowd = objects["is_crowd"]
        np.testing.assert_array_equal(objects["label"][~crowd], test[1]["labels"][i][real])
        y0, x0, y1, x1 = (objects["bbox"][~crowd] * size).T
        np.testing.assert_allclose(np.stack([x0, y0, x1, y1], -1), test[1]["boxes"][i][real], atol=1e-4)
        assert crowd.sum() == (1 if i == 0 else 0)

    # Through DETR's pipeline: pixel xyxy boxes, crowd dropped, -1 padding, the whole image valid.
    _, batches, _ = detr_detection.load_data(config)
    inputs, targets = zip(*batches.as_numpy_iterator())
    labels = np.concatenate([t["labels"] for t in targets])
    boxes = np.concatenate([t["boxes"] for t in targets])
    assert np.concatenate([x["pixel_mask"] for x in inputs]).all()
    for i in range(4):
        real = test[1]["labels"][i] >= 0 if i != 3 else np.zeros(3, bool)
        count = int(real.sum())
        np.testing.assert_array_equal(labels[i, :count], test[1]["labels"][i][real])
        assert (labels[i, count:] == -1).all()
        np.testing.assert_allclose(boxes[i, :count], test[1]["boxes"][i][real], atol=1e-3)


def test_broken_coco_folders_fail_naming_what_is_wrong(tmp_path):
    _coco_folder(tmp_path)
    file = tmp_path / "annotations" / "instances_val2017.json"
    coco = json.loads(file.read_text())
    coco["annotations"][0]["category_id"] = 5
    file.write_text(json.dumps(coco))
    config = {"image_size": 48, "seed": 0}
    with pytest.raises(ValueError, match=r"names category_id 5, which is not among the categories \[3, 7, 11\]"):
        folder_data.detection(str(tmp_path), config)
    coco["annotations"][0]["category_id"] = 3
    coco["images"][1]["file_name"] = "gone.png"
    file.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"lists 1 image\(s\) that are not in .*gone.png"):
        folder_data.detection(str(tmp_path), config)
    os.remove(file)
    with pytest.raises(ValueError, match=r"needs COCO's layout: annotations/instances_<split>.json.*val"):
        folder_data.detection(str(tmp_path), config)


def _pairs_folder(path, size=32):
    train = make_scenes(5, size, 2, seed=1)
    test = make_scenes(3, size, 2, seed=2)
    folder_data.write_pairs(str(path), {"train": (train[0], train[2]), "test": (test[0], test[2])}, "masks")
    folder_data.write_pairs(str(path), {"train": (train[0], train[1]), "test": (test[0], test[1])}, "depth")
    return train, test


def test_image_mask_and_image_depth_pairs_read_back_exactly(tmp_path):
    size = 32
    _, test = _pairs_folder(tmp_path, size)
    config = dict(segmentation.CONFIG, dataset=f"folder:{tmp_path}", image_size=size, batch_size=2)
    _, pairs, class_names = folder_data.segmentation(str(tmp_path), config, 255)
    # No classes.txt: the classes are those the training masks hold.
    assert class_names == [f"class_{i}" for i in range(int(make_scenes(5, size, 2, seed=1)[2].max()) + 1)]
    for i, (image, labels) in enumerate(pairs.as_numpy_iterator()):
        np.testing.assert_array_equal(image, test[0][i])
        np.testing.assert_array_equal(labels[..., 0], test[2][i])
    _, batches, _ = segmentation.load_data(config)
    labels = np.concatenate([y for _, y in batches.as_numpy_iterator()])
    np.testing.assert_array_equal(labels, test[2])

    (tmp_path / "classes.txt").write_text("\n".join(f"name_{i}" for i in range(9)) + "\n")
    assert segmentation.load_data(config)[2] == [f"name_{i}" for i in range(9)]

    config = dict(dpt_depth.CONFIG, dataset=f"folder:{tmp_path}", image_size=size, batch_size=2)
    _, batches = dpt_depth.load_data(config)
    depth = np.concatenate([y for _, y in batches.as_numpy_iterator()])
    np.testing.assert_allclose(depth, test[1], atol=0.5e-3)  # millimetre PNGs
    _, batches = dpt_depth.load_data(dict(config, depth_png_scale=2000.0))
    np.testing.assert_allclose(np.concatenate([y for _, y in batches.as_numpy_iterator()]), test[1] / 2, atol=0.3e-3)


def test_masks_are_read_as_integer_indices_in_every_png_format(tmp_path):
    """16-bit masks keep their labels (TensorFlow's decoder divided them by
    257), palette masks give their indices (not grey levels of the colours),
    colour masks are refused; 8-bit depth PNGs are not multiplied by 257."""
    from PIL import Image

    labels = np.array([[0, 1, 2, 3], [4, 255, 300, 1]], "int32")
    Image.fromarray(labels.astype("uint16")).save(tmp_path / "m16.png")
    assert Image.open(tmp_path / "m16.png").mode.startswith("I;16")
    values, bits = folder_data.read_integer_png(str(tmp_path / "m16.png"))
    np.testing.assert_array_equal(values, labels)
    assert bits == 16
    palette = Image.fromarray(np.array([[0, 1], [2, 3]], "uint8"), mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12))  # VOC's first colours
    palette.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(folder_data.read_integer_png(str(tmp_path / "voc.png"))[0], [[0, 1], [2, 3]])
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3, 3, 3), dtype="uint8")).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb.png: a RGB image is not a map of integers"):
        folder_data.read_integer_png(str(tmp_path / "rgb.png"))

    # Through the recipe's reader: 16-bit and palette masks of a folder.
    _, test = _pairs_folder(tmp_path / "data")
    for name in os.listdir(tmp_path / "data" / "test" / "masks"):
        path = tmp_path / "data" / "test" / "masks" / name
        mask = np.asarray(Image.open(path))
        if name.endswith("1.png"):
            Image.fromarray(mask.astype("uint16")).save(path)
        else:
            indexed = Image.fromarray(mask.astype("uint8"), mode="P")
            indexed.putpalette(list(np.random.default_rng(1).integers(0, 255, 768)))
            indexed.save(path)
    config = dict(segmentation.CONFIG, image_size=32, batch_size=2)
    _, pairs, _ = folder_data.segmentation(str(tmp_path / "data"), config, 255)
    for i, (_, mask) in enumerate(pairs.as_numpy_iterator()):
        np.testing.assert_array_equal(mask[..., 0], test[2][i])

    # 8-bit depth PNGs: value / depth_png_scale, not value * 257 / scale.
    depth_dir = tmp_path / "data" / "test" / "depth"
    for name in os.listdir(depth_dir):
        Image.fromarray(np.full((32, 32), 200, "uint8")).save(depth_dir / name)
    for name in os.listdir(tmp_path / "data" / "train" / "depth"):
        Image.fromarray(np.full((32, 32), 200, "uint8")).save(tmp_path / "data" / "train" / "depth" / name)
    _, test_depth = folder_data.depth(str(tmp_path / "data"), {"seed": 0, "depth_png_scale": 100.0})
    for example in test_depth.as_numpy_iterator():
        np.testing.assert_allclose(example["depth"], 2.0)


def test_broken_pair_folders_fail_naming_what_is_wrong(tmp_path):
    import tensorflow as tf

    _pairs_folder(tmp_path)
    config = dict(segmentation.CONFIG, image_size=32, batch_size=2)
    os.remove(tmp_path / "test" / "masks" / "000001.png")
    with pytest.raises(ValueError, match=r"1 file\(s\) have no partner of the same name.*images/000001.png"):
        folder_data.segmentation(str(tmp_path), config, 255)
    _pairs_folder(tmp_path)
    folder_data._write_png(str(tmp_path / "test" / "masks" / "000002.png"), np.zeros((16, 32), "uint8"))
    _, test, _ = dense_common.folder_segmentation(str(tmp_path), config)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)differ in size:.*images/000002.png.*masks/000002.png"):
        list(test.as_numpy_iterator())
    _pairs_folder(tmp_path)
    (tmp_path / "classes.txt").write_text("a\nb\n")  # fewer classes than the masks hold
    _, test, _ = dense_common.folder_segmentation(str(tmp_path), config)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)neither a class index \(< 2, from classes.txt\) nor 255:.*masks/0000\d\d.png.*largest value:.*[2-9]"):
        list(test.as_numpy_iterator())
    with pytest.raises(ValueError, match=r"depth_png_scale must be positive.*Received: depth_png_scale=0.0"):
        folder_data.depth(str(tmp_path), {"seed": 0, "depth_png_scale": 0.0})
    shutil.rmtree(tmp_path / "test" / "depth")
    with pytest.raises(ValueError, match=r"needs images/ and depth/ .*test/depth' is missing"):
        folder_data.depth(str(tmp_path), {"seed": 0})


@pytest.mark.one_backend(
    "tensorflow",
    "the folders feed the same tf.data pipelines as tensorflow-datasets, whose recipe runs on tfds' mock "
    "data are tested on every backend; one backend is enough for the folder readers",
)
@pytest.mark.parametrize("recipe", ["classification", "detection", "segmentation", "depth"])
def test_every_recipe_trains_and_evaluates_on_a_folder(tmp_path, recipe):
    data = tmp_path / "data"
    if recipe == "classification":
        _digits_folder(data, per_class=(3, 1), classes=3)
        module, extra = vit_classification, ["--image-size", "16", "--batch-size", "4"]
    elif recipe == "detection":
        _coco_folder(data, 48)
        module, extra = detr_detection, ["--image-size", "48", "--batch-size", "2"]
    else:
        _pairs_folder(data, 32)
        module = segmentation if recipe == "segmentation" else dpt_depth
        extra = ["--image-size", "32", "--batch-size", "2"]
    config, _ = module.parse_args(["--smoke", "--dataset", f"folder:{data}", *extra])
    results = module.run(config, str(tmp_path / "run"), verbose=0)
    assert results["dataset"] == f"folder:{data}" and results["epochs"] == 1
    assert np.isfinite(results["history"][0]["loss"])
    assert os.path.isdir(tmp_path / "run" / "preset")
