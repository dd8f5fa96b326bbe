"""Local folders for the recipes: `--dataset folder:PATH`.

Each recipe reads its task's usual layout (`PATH/train` for training, the
first of `PATH/test`, `PATH/val`, `PATH/validation` for evaluation):

- classification, an image-folder tree (Keras' and torchvision's
  `ImageFolder` layout), read by `keras.utils.image_dataset_from_directory`:

      PATH/train/<class name>/<image>.png|jpg|...
      PATH/test/<class name>/<image>...

- detection, COCO's own layout (`instances_<split>.json` and the image
  folder of the same split, e.g. COCO 2017 as downloaded):

      PATH/annotations/instances_train2017.json   PATH/train2017/<file_name>
      PATH/annotations/instances_val2017.json     PATH/val2017/<file_name>

- segmentation, image/mask pairs matched by file name (`classes.txt`, one
  class name per line, optional: without it the masks are scanned):

      PATH/train/images/<name>.png|jpg   PATH/train/masks/<name>.png
      (the class index per pixel, 255 = ignore: 8- or 16-bit grey or a
      palette PNG, whose indices are the classes; colour masks are refused)

- depth, image/depth pairs matched by file name:

      PATH/train/images/<name>.png|jpg   PATH/train/depth/<name>.png
      (8- or 16-bit PNGs: depth in metres times --depth-png-scale, 1000 (mm)
      by default as NYU Depth v2's and DIODE's exports; 256 for KITTI; 0 =
      unknown; the bit depth is read from the file and printed)

The readers return unbatched `tf.data` sets in the structure of the
matching tensorflow-datasets set, so one pipeline per task (parallel
decoding, the task's augmentation, batching, prefetching) serves both.
Nothing is guessed: a missing folder, an image without its target (or the
reverse), an annotation naming an unknown image or category, or a mask
value beyond the classes raises a `ValueError` that names it.
"""

import json
import os

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEST_SPLITS = ("test", "val", "validation")


def parse(dataset):
    """The folder of a `folder:PATH` dataset (None for any other dataset)."""
    if not str(dataset).startswith("folder:"):
        return None
    path = os.path.expanduser(str(dataset)[len("folder:"):])
    if not os.path.isdir(path):
        raise ValueError(f"dataset {dataset!r}: {path!r} is not a folder. Pass --dataset folder:PATH with an existing PATH.")
    return path


def _split_dirs(path, layout):
    """`(train_dir, test_dir)` under `path`, or a ValueError describing `layout`."""
    train = os.path.join(path, "train")
    tests = [os.path.join(path, name) for name in TEST_SPLITS if os.path.isdir(os.path.join(path, name))]
    if not os.path.isdir(train) or not tests:
        found = sorted(os.listdir(path))[:10]
        raise ValueError(
            f"folder {path!r} needs a 'train' folder and one of {TEST_SPLITS} for evaluation ({layout}). "
            f"Found: {found}."
        )
    return train, tests[0]


def _images_in(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def _decode(path, channels):
    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)


# PIL modes that hold one integer per pixel: 8-bit grey, palette (the value is
# the palette index, as VOC's masks), 16- and 32-bit integers.
_INTEGER_MODES = {"L": 8, "P": 8, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32}


def read_integer_png(path):
    """`(values int32 (H, W), bits)` of a single-channel PNG read as stored:
    a palette PNG's indices (not its colours), 8- and 16-bit grey levels
    unscaled. TensorFlow's decoders cannot do this (they expand palettes to
    colours and rescale 16-bit to 8-bit or 8-bit to 16-bit), so PIL reads
    it. A colour image is refused unless its channels are equal."""
    import numpy as np
    from PIL import Image

    name = path.decode() if isinstance(path, bytes) else str(path)
    try:
        with Image.open(name) as image:
            mode = image.mode
            values = np.asarray(image)
    except (OSError, ValueError) as error:
        raise ValueError(f"{name}: not a readable PNG ({error}).") from None
    if mode in _INTEGER_MODES:
        return values.astype("int32"), _INTEGER_MODES[mode]
    if mode in ("RGB", "RGBA", "LA") and values.ndim == 3:
        colour = values[..., :3] if mode != "LA" else values[..., :1]
        if np.all(colour == colour[..., :1]):  # grey stored as colour
            return colour[..., 0].astype("int32"), 8
    raise ValueError(
        f"{name}: a {mode} image is not a map of integers (class indices or depths). Save it as a single-channel "
        "8- or 16-bit PNG, or a palette PNG whose indices are the classes."
    )


def _integer_png(file, what):
    """`read_integer_png` inside a tf.data map: int32 `(H, W)`."""
    import tensorflow as tf

    values = tf.numpy_function(lambda f: read_integer_png(f)[0], [file], tf.int32, name=f"read_{what}")
    values.set_shape((None, None))
    return values


# -------------------------------------------------------------- classification


def classification(path, config):
    """`(train, test, class_names, channels)` of unbatched `(image, label)`:
    float32 images in [0, 255] at `image_size x image_size` (bilinear),
    int32 labels in the order of the sorted class folders (the same for both
    splits: a test class missing from training is an error)."""
    import keras
    import tensorflow as tf

    layout = "PATH/train/<class>/<image>, PATH/test/<class>/<image>"
    train_dir, test_dir = _split_dirs(path, layout)
    class_names = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    if len(class_names) < 2:
        raise ValueError(f"folder {train_dir!r} must hold one sub-folder per class (at least two). Found: {class_names}.")
    unknown = sorted(
        set(d for d in os.listdir(test_dir) if os.path.isdir(os.path.join(test_dir, d))) - set(class_names)
    )
    if unknown:
        raise ValueError(f"folder {test_dir!r} has classes that {train_dir!r} does not: {unknown}.")
    first = next(
        (os.path.join(train_dir, c, f) for c in class_names for f in _images_in(os.path.join(train_dir, c))), None
    )
    if first is None:
        raise ValueError(f"folder {train_dir!r} holds no image ({', '.join(IMAGE_EXTENSIONS)}).")
    channels = int(_decode(first, 0).shape[-1])
    color_mode = {1: "grayscale", 4: "rgba"}.get(channels, "rgb")
    channels = {1: 1, 4: 4}.get(channels, 3)
    size = (config["image_size"], config["image_size"])
    common = dict(
        labels="inferred", label_mode="int", class_names=class_names, color_mode=color_mode, image_size=size,
        batch_size=None, verbose=False,
    )
    train = keras.utils.image_dataset_from_directory(train_dir, shuffle=True, seed=config["seed"], **common)
    test = keras.utils.image_dataset_from_directory(test_dir, shuffle=False, **common)
    cast = lambda image, label: (image, tf.cast(label, "int32"))  # noqa: E731
    return train.map(cast), test.map(cast), class_names, channels


# ------------------------------------------------------------------- detection


def _coco_split(path, prefixes):
    """`(json_path, image_dir)` of the first split whose name starts with one of `prefixes`."""
    annotations = os.path.join(path, "annotations")
    names = sorted(os.listdir(annotations)) if os.path.isdir(annotations) else []
    for prefix in prefixes:
        for name in names:
            if name.startswith(f"instances_{prefix}") and name.endswith(".json"):
                split = name[len("instances_"):-len(".json")]
                if os.path.isdir(os.path.join(path, split)):
                    return os.path.join(annotations, name), os.path.join(path, split)
    raise ValueError(
        f"folder {path!r} needs COCO's layout: annotations/instances_<split>.json with the images in <split>/, "
        f"for a split named {prefixes[0]}* (e.g. annotations/instances_{prefixes[0]}2017.json and {prefixes[0]}2017/). "
        f"Found in annotations/: {names[:10]}."
    )


def read_coco(json_path, image_dir, categories=None):
    """The images of a COCO instances file: `(paths, boxes, labels,
    crowd, class_names, categories)`, one row per image (images without
    objects included, as DETR trains on them), boxes relative yxyx (tfds'
    `coco` convention), labels the index of the category id among the sorted
    ids (`categories`, taken from the file unless given, so that the
    evaluation split uses the training split's). Degenerate boxes (zero
    width or height, which DETR's loader drops too) are left out."""
    import numpy as np

    with open(json_path) as f:
        coco = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"{json_path!r} is not a COCO instances file: it has no {key!r} list.")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    if categories is None:
        categories = sorted(names)
    index = {cid: i for i, cid in enumerate(categories)}
    images = {image["id"]: image for image in coco["images"]}
    objects = {image_id: [] for image_id in images}
    for annotation in coco["annotations"]:
        if annotation["image_id"] not in images:
            raise ValueError(f"{json_path!r}: annotation {annotation.get('id')} names image_id "
                             f"{annotation['image_id']}, which is not in its 'images'.")
        if annotation["category_id"] not in index:
            raise ValueError(f"{json_path!r}: annotation {annotation.get('id')} names category_id "
                             f"{annotation['category_id']}, which is not among the categories {categories}.")
        objects[annotation["image_id"]].append(annotation)
    paths, boxes, labels, crowd, missing = [], [], [], [], []
    for image_id in sorted(images):
        image = images[image_id]
        file = os.path.join(image_dir, image["file_name"])
        if not os.path.isfile(file):
            missing.append(file)
        width, height = float(image["width"]), float(image["height"])
        rows = [a for a in objects[image_id] if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        xywh = np.array([a["bbox"] for a in rows], "float32").reshape(-1, 4)
        boxes.append(np.stack([
            xywh[:, 1] / height, xywh[:, 0] / width,
            (xywh[:, 1] + xywh[:, 3]) / height, (xywh[:, 0] + xywh[:, 2]) / width,
        ], axis=-1).clip(0.0, 1.0).astype("float32"))
        labels.append(np.array([index[a["category_id"]] for a in rows], "int64"))
        crowd.append(np.array([bool(a.get("iscrowd", 0)) for a in rows], bool))
        paths.append(file)
    if missing:
        raise ValueError(f"{json_path!r} lists {len(missing)} image(s) that are not in {image_dir!r}, "
                         f"e.g. {missing[:3]}.")
    class_names = [names.get(cid, str(cid)) for cid in categories]
    return paths, boxes, labels, crowd, class_names, categories


def detection(path, config):
    """`(train, test, class_names)` of unbatched tfds-`coco`-style examples
    (`image` uint8 RGB, `objects`: `bbox` relative yxyx, `label`,
    `is_crowd`) from COCO's layout."""
    import numpy as np
    import tensorflow as tf

    train_json, train_images = _coco_split(path, ("train",))
    test_json, test_images = _coco_split(path, ("val", "test"))
    *train_rows, class_names, categories = read_coco(train_json, train_images)
    *test_rows, _, _ = read_coco(test_json, test_images, categories)

    def dataset(paths, boxes, labels, crowd, shuffle):
        lengths = [len(row) for row in labels]  # one flat array per field: fast for COCO's 860k boxes

        def ragged(rows, dtype, shape):
            flat = np.concatenate(rows).astype(dtype) if rows else np.zeros(shape, dtype)
            return tf.RaggedTensor.from_row_lengths(flat.reshape(shape), lengths)

        data = tf.data.Dataset.from_tensor_slices((
            tf.constant(paths),
            ragged(boxes, "float32", (-1, 4)),
            ragged(labels, "int64", (-1,)),
            ragged(crowd, bool, (-1,)),
        ))
        if shuffle:  # the file names, before decoding: the whole set, cheaply
            data = data.shuffle(len(paths), seed=config["seed"], reshuffle_each_iteration=True)

        def example(file, bbox, label, is_crowd):
            image = _decode(file, 3)
            image.set_shape((None, None, 3))
            return {"image": image, "objects": {"bbox": bbox, "label": label, "is_crowd": is_crowd}}

        return data.map(example, num_parallel_calls=tf.data.AUTOTUNE)

    return dataset(*train_rows, True), dataset(*test_rows, False), class_names


# ---------------------------------------------------------------------- dense


def _pairs(split_dir, target_folder, target_extensions):
    """Sorted `(image_paths, target_paths)` of `split_dir/images` and
    `split_dir/<target_folder>`, matched by file name without extension."""
    images_dir, targets_dir = os.path.join(split_dir, "images"), os.path.join(split_dir, target_folder)
    for folder in (images_dir, targets_dir):
        if not os.path.isdir(folder):
            raise ValueError(f"folder {split_dir!r} needs images/ and {target_folder}/ (pairs matched by file name); "
                             f"{folder!r} is missing.")
    images = {os.path.splitext(f)[0]: f for f in _images_in(images_dir)}
    targets = {os.path.splitext(f)[0]: f for f in sorted(os.listdir(targets_dir)) if f.lower().endswith(target_extensions)}
    lonely = sorted(set(images) ^ set(targets))
    if lonely:
        which = [f"images/{images[n]}" if n in images else f"{target_folder}/{targets[n]}" for n in lonely[:5]]
        raise ValueError(f"folder {split_dir!r}: {len(lonely)} file(s) have no partner of the same name in the "
                         f"other folder, e.g. {which}.")
    if not images:
        raise ValueError(f"folder {images_dir!r} holds no image ({', '.join(IMAGE_EXTENSIONS)}).")
    names = sorted(images)
    return ([os.path.join(images_dir, images[n]) for n in names], [os.path.join(targets_dir, targets[n]) for n in names])


def _pair_dataset(image_paths, target_paths, decode_target, shuffle, seed):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((image_paths, target_paths))
    if shuffle:
        data = data.shuffle(len(image_paths), seed=seed, reshuffle_each_iteration=True)

    def example(image_file, target_file):
        image = _decode(image_file, 3)
        image.set_shape((None, None, 3))
        target = decode_target(target_file, image_file)
        same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(target)[:2]))
        tf.debugging.Assert(same, ["an image and its target differ in size:", image_file, target_file])
        return image, target

    return data.map(example, num_parallel_calls=tf.data.AUTOTUNE)


def segmentation(path, config, ignore_index):
    """`(train, test, class_names)` of unbatched `(image uint8 (H, W, 3),
    labels int32 (H, W, 1))` from image/mask pairs; a mask value that is
    neither a class nor `ignore_index` fails when its batch is read."""
    import tensorflow as tf

    layout = "PATH/train/images/<name>, PATH/train/masks/<name>.png, the same under PATH/test"
    train_dir, test_dir = _split_dirs(path, layout)
    train_pairs = _pairs(train_dir, "masks", (".png",))
    test_pairs = _pairs(test_dir, "masks", (".png",))
    names_file = os.path.join(path, "classes.txt")
    if os.path.isfile(names_file):
        with open(names_file) as f:
            class_names = [line.strip() for line in f if line.strip()]
    else:
        class_names = [f"class_{i}" for i in range(_largest_label(train_pairs[1], ignore_index) + 1)]
    num_classes = len(class_names)

    source = "classes.txt" if os.path.isfile(names_file) else "the training masks"

    def decode_mask(file, image_file):
        mask = _integer_png(file, "mask")[..., None]  # class indices as stored (palette, 8- or 16-bit)
        valid = tf.reduce_all(tf.logical_or(mask < num_classes, mask == ignore_index))
        tf.debugging.Assert(valid, [
            f"a mask holds a value that is neither a class index (< {num_classes}, from {source}) nor "
            f"{ignore_index}:", file, "largest value:", tf.reduce_max(mask),
        ])
        return mask

    train = _pair_dataset(*train_pairs, decode_mask, True, config["seed"])
    test = _pair_dataset(*test_pairs, decode_mask, False, config["seed"])
    return train, test, class_names


def _largest_label(mask_paths, ignore_index):
    """The largest class index in the masks (`ignore_index` aside), read in parallel."""
    import tensorflow as tf

    def largest(file):
        mask = _integer_png(file, "mask")
        return tf.reduce_max(tf.where(mask == ignore_index, -1, mask))

    data = tf.data.Dataset.from_tensor_slices(mask_paths).map(largest, num_parallel_calls=tf.data.AUTOTUNE)
    value = int(data.reduce(tf.constant(-1), tf.maximum))
    if value < 0:
        raise ValueError(f"the training masks hold no class index (every pixel is {ignore_index}).")
    return value


def depth(path, config):
    """`(train, test)` of unbatched tfds-`nyu_depth_v2`-style examples
    (`image` uint8 (H, W, 3), `depth` float32 (H, W) in metres, 0 where
    unknown) from image/depth pairs."""
    import tensorflow as tf

    layout = "PATH/train/images/<name>, PATH/train/depth/<name>.png (16-bit), the same under PATH/test"
    train_dir, test_dir = _split_dirs(path, layout)
    scale = float(config.get("depth_png_scale", 1000.0))
    if not scale > 0:
        raise ValueError(f"depth_png_scale must be positive (the PNGs hold metres x depth_png_scale). "
                         f"Received: depth_png_scale={scale}")

    depth_files = _pairs(train_dir, "depth", (".png",))[1]
    _, bits = read_integer_png(depth_files[0])
    print(f"depth PNGs: {bits}-bit (read from {os.path.basename(depth_files[0])}); depth in metres = value / "
          f"{scale:g} (--depth-png-scale)", flush=True)

    def decode_depth(file, image_file):
        # The stored integers, 8- or 16-bit alike (TensorFlow's uint16
        # decoder multiplies an 8-bit PNG by 257).
        return tf.cast(_integer_png(file, "depth"), "float32") / scale

    def as_example(image, depth_map):
        return {"image": image, "depth": depth_map}

    train = _pair_dataset(*_pairs(train_dir, "depth", (".png",)), decode_depth, True, config["seed"])
    test = _pair_dataset(*_pairs(test_dir, "depth", (".png",)), decode_depth, False, config["seed"])
    return train.map(as_example), test.map(as_example)


# ------------------------------------------------------- writing the layouts


def _write_png(path, array):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def write_classification(path, splits, class_names):
    """Writes `{"train": (images, labels), "test": ...}` (uint8 images) as an image-folder tree."""
    for split, (images, labels) in splits.items():
        for i, (image, label) in enumerate(zip(images, labels)):
            image = image[..., 0] if image.shape[-1] == 1 else image
            _write_png(os.path.join(path, split, class_names[int(label)], f"{i:06d}.png"), image)


def write_coco(path, splits, class_names, category_ids=None):
    """Writes `{"train2017": (images, targets), ...}` in COCO's layout
    (targets: `{"boxes"}` pixel xyxy and `{"labels"}`, -1 padded, as
    `keras_vit.data.make_shapes`); `category_ids` (default 1, 2, ...) are the
    ids of `class_names`, e.g. non-contiguous as COCO's."""
    import numpy as np

    category_ids = list(category_ids or range(1, len(class_names) + 1))
    for split, (images, targets) in splits.items():
        coco = {
            "images": [], "annotations": [],
            "categories": [{"id": int(c), "name": n} for c, n in zip(category_ids, class_names)],
        }
        for i, image in enumerate(images):
            name = f"{i:012d}.png"
            _write_png(os.path.join(path, split, name), image)
            coco["images"].append({"id": i + 1, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
            for box, label in zip(np.asarray(targets["boxes"][i]), np.asarray(targets["labels"][i])):
                if label < 0:
                    continue
                x0, y0, x1, y1 = (float(v) for v in box)
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": i + 1, "category_id": int(category_ids[label]),
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                })
        os.makedirs(os.path.join(path, "annotations"), exist_ok=True)
        with open(os.path.join(path, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(coco, f)


def write_pairs(path, splits, target_folder, depth_png_scale=1000.0):
    """Writes `{"train": (images, targets), ...}` as image/target pairs:
    `target_folder` "masks" (uint8 class indices) or "depth" (metres, as
    16-bit PNGs of `depth * depth_png_scale`)."""
    import numpy as np

    for split, (images, targets) in splits.items():
        for i, (image, target) in enumerate(zip(images, targets)):
            _write_png(os.path.join(path, split, "images", f"{i:06d}.png"), image)
            if target_folder == "depth":
                target = np.round(np.clip(target * depth_png_scale, 0, 65535)).astype("uint16")
            else:
                target = target.astype("uint8")
            _write_png(os.path.join(path, split, target_folder, f"{i:06d}.png"), target)
