"""What the dense-prediction recipes (depth and segmentation) share: their
data (the embedded scenes, NYU Depth v2 and ADE20K through
tensorflow-datasets, image/mask and image/depth pairs in local folders) and
a small ViT backbone.

Datasets come as numpy pairs (the embedded scenes: a resumed run sees
exactly the batches of an uninterrupted one) or as batched `tf.data` sets of
`(images, targets)` with raw [0, 255] images: the models' preprocessors
normalise them inside `fit`/`evaluate`/`predict`.
"""


import keras
import numpy as np

import keras_vit
from keras_vit.data.scenes import make_scenes

# ADE20K (tfds `scene_parse150`): label 0 is "other" and is ignored; 1..150
# become classes 0..149 (mmsegmentation's reduce_zero_label).
IGNORE_INDEX = 255

# The integer options both dense recipes take (sizes of the data and the model, the schedule).
INT_KEYS = (
    "image_size", "num_train", "num_test", "max_objects", "patch_size", "hidden_dim", "num_layers",
    "num_heads", "mlp_dim", "fusion_width", "epochs", "batch_size", "eval_every", "seed",
)


# ----------------------------------------------------------------------- data


def scenes(config):
    """The embedded scenes: `(train, test)`, each `(images, depth, labels)`."""
    size, objects = config["image_size"], config["max_objects"]
    train = make_scenes(config["num_train"], size, objects, seed=config["seed"])
    test = make_scenes(config["num_test"], size, objects, seed=config["seed"] + 1)
    return train, test


def check_dataset(dataset, embedded):
    if dataset != embedded and not str(dataset).startswith(("tfds:", "folder:")):
        raise ValueError(
            f"dataset must be {embedded!r}, 'tfds:NAME' or 'folder:PATH'. Received: dataset={dataset!r}"
        )


def _tfds_splits(name, config, splits):
    from recipes import tfds_data

    tfds_data.import_tfds()  # a clear message when tensorflow-datasets is missing
    return tfds_data.load(name, list(splits), data_dir=config["data_dir"], download=not config["offline"])


def _random_scale_crop(image, target, size, fill):
    """mmsegmentation's training transform at `size`: resize so that the
    image fits `size * ratio` (ratio uniform in [0.5, 2]), random crop of
    `size x size` (padded with `fill` in the target, 0 in the image), random
    horizontal flip. The target resizes with nearest neighbours."""
    import tensorflow as tf

    shape = tf.cast(tf.shape(image)[:2], "float32")
    ratio = tf.random.uniform((), 0.5, 2.0)
    # mmseg's img_scale (2048, 512) for 512 crops: long side <= 4 * size * ratio, short side <= size * ratio.
    factor = tf.minimum(4.0 * ratio * size / tf.reduce_max(shape), ratio * size / tf.reduce_min(shape))
    new = tf.maximum(tf.cast(tf.round(shape * factor), "int32"), 1)
    image = tf.image.resize(tf.cast(image, "float32"), new)
    target = tf.image.resize(target, new, method="nearest")
    height, width = tf.maximum(new[0], size), tf.maximum(new[1], size)
    image = tf.image.pad_to_bounding_box(image, 0, 0, height, width)
    target = tf.image.pad_to_bounding_box(target - fill, 0, 0, height, width) + fill  # pads with `fill`
    stacked = tf.image.random_crop(tf.concat([image, tf.cast(target, "float32")], -1), (size, size, 4))
    stacked = tf.image.random_flip_left_right(stacked)
    return stacked[..., :3], tf.cast(stacked[..., 3:], target.dtype)


def _ade_labels(example, num_classes):
    """`(H, W, 1)` int32 labels of a tfds scene_parse150 example at its image's
    size: annotation k in 1..num_classes -> class k - 1; 0 ("other") and any
    byte above `num_classes` (none in ADE20K; tfds' mock data draws them) ->
    `IGNORE_INDEX`."""
    import tensorflow as tf

    annotation = tf.cast(example["annotation"][..., :1], "int32")
    # At the image's size (they are for ADE20K; tfds' mock data draws the two sizes apart).
    annotation = tf.image.resize(annotation, tf.shape(example["image"])[:2], method="nearest")
    unlabelled = tf.logical_or(annotation == 0, annotation > num_classes)
    return tf.where(unlabelled, IGNORE_INDEX, annotation - 1)


def tfds_segmentation(name, config):
    """ADE20K-style tfds data (`image`, `annotation` (H, W, 3) with the label
    in each channel, 0 = unlabelled): `(train, test, class_names)` as
    `segmentation_pipeline`, labels in `[0, 150)` or `IGNORE_INDEX`."""
    # tfds' scene_parse150 has "train" (20,210 images) and "test" (ADE20K's 2,000 validation images).
    splits = ("train", "test") if name.startswith("scene_parse150") else ("train", "validation")
    (train, test), _ = _tfds_splits(name, config, splits)
    num_classes = 150

    def pair(example):
        return example["image"], _ade_labels(example, num_classes)

    train = train.shuffle(1000, seed=config["seed"])
    return (*segmentation_pipeline(train.map(pair), test.map(pair), config), [f"class_{i}" for i in range(num_classes)])


def folder_segmentation(path, config):
    """Image/mask pairs in a folder (`recipes.folder_data.segmentation`),
    as `segmentation_pipeline`: `(train, test, class_names)`."""
    from recipes import folder_data

    train, test, class_names = folder_data.segmentation(path, config, IGNORE_INDEX)
    return (*segmentation_pipeline(train, test, config), class_names)


def segmentation_pipeline(train, test, config):
    """Batched, prefetched `(train, test)` of `(images, labels)` from
    unbatched (training: shuffled) `(image, labels (H, W, 1) int32)` pairs:
    training crops as `_random_scale_crop`, test images resized to
    `image_size x image_size` (labels: nearest); each map in parallel."""
    import tensorflow as tf

    size = config["image_size"]

    def train_example(image, labels):
        image, labels = _random_scale_crop(image, labels, size, IGNORE_INDEX)
        return image, labels[..., 0]

    def test_example(image, labels):
        image = tf.image.resize(tf.cast(image, "float32"), (size, size))
        return image, tf.image.resize(labels, (size, size), method="nearest")[..., 0]

    batch, parallel = config["batch_size"], tf.data.AUTOTUNE
    train = train.map(train_example, num_parallel_calls=parallel).batch(batch, drop_remainder=True).prefetch(parallel)
    test = test.map(test_example, num_parallel_calls=parallel).batch(batch).prefetch(parallel)
    return train, test


def tfds_depth(name, config):
    """NYU Depth v2-style tfds data (`image`, `depth` (H, W) in metres, 0 where
    unknown), as `depth_pipeline`."""
    (train, test), _ = _tfds_splits(name, config, ("train", "validation"))
    return depth_pipeline(train.shuffle(1000, seed=config["seed"]), test, config)


def folder_depth(path, config):
    """Image/depth pairs in a folder (`recipes.folder_data.depth`), as `depth_pipeline`."""
    from recipes import folder_data

    return depth_pipeline(*folder_data.depth(path, config), config)


def depth_pipeline(train, test, config):
    """Batched, prefetched `(train, test)` of `(images, depth)` at
    `image_size x image_size` (image bilinear, depth nearest, so no invalid
    value is blended in) from unbatched (training: shuffled) examples of
    `image` and `depth`; training images flipped at random; each map in
    parallel."""
    import tensorflow as tf

    size = config["image_size"]

    def example_pair(example):
        image = tf.image.resize(tf.cast(example["image"], "float32"), (size, size))
        depth = tf.cast(example["depth"], "float32")[..., None]
        depth = tf.image.resize(depth, (size, size), method="nearest")[..., 0]
        return image, depth

    def flip(image, depth):
        flipped = tf.random.uniform(()) < 0.5
        return (tf.where(flipped, image[:, ::-1], image), tf.where(flipped, depth[:, ::-1], depth))

    batch, parallel = config["batch_size"], tf.data.AUTOTUNE
    train = (
        train.map(example_pair, num_parallel_calls=parallel)
        .map(flip, num_parallel_calls=parallel).batch(batch, drop_remainder=True).prefetch(parallel)
    )
    test = test.map(example_pair, num_parallel_calls=parallel).batch(batch).prefetch(parallel)
    return train, test


def batches_of(data, batch_size, verbose=False):
    """`(images, targets)` batches of numpy pairs or of a batched tf.data set,
    as numpy; `verbose`: a progress bar (in images)."""
    import keras

    total = len(data[0]) if isinstance(data, tuple) else None
    progress = keras.utils.Progbar(total, unit_name="image") if verbose else None
    seen = 0
    if isinstance(data, tuple):
        pairs = ((data[0][s:s + batch_size], data[1][s:s + batch_size]) for s in range(0, total, batch_size))
    else:
        pairs = data.as_numpy_iterator()
    for images, targets in pairs:
        yield images, targets
        seen += len(images)
        if progress is not None:
            progress.update(seen)


def first_examples(data, count):
    """The first `count` `(images, targets)` of numpy pairs or a tf.data set."""
    images, targets = [], []
    for x, y in batches_of(data, count):
        images.append(x)
        targets.append(y)
        if sum(len(i) for i in images) >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(targets)[:count]


# ---------------------------------------------------------------------- model


def dpt_neck(config):
    """A DPT neck for a `num_layers`-block backbone: four taps spread over
    the blocks (the last block always), widths `hidden_dim x (1/4, 1/2, 1, 1)`
    (DPT-Base's ratios)."""
    layers, width = config["num_layers"], config["hidden_dim"]
    if layers < 4:
        raise ValueError(f"DPT taps four blocks: num_layers must be at least 4. Received: num_layers={layers}")
    taps = [f"block_{round((i + 1) * layers / 4) - 1}" for i in range(4)]
    return {
        "taps": taps,
        "neck_widths": [max(width // 4, 1), max(width // 2, 1), width, width],
        "fusion_width": config["fusion_width"],
    }


def preprocessor(config):
    return keras_vit.ViTImagePreprocessor(config["image_size"], mean=0.5, std=0.5, name="preprocessor")


def optimizer(config, steps_per_epoch):
    schedule = keras.optimizers.schedules.CosineDecay(
        config["learning_rate"], max(steps_per_epoch * config["epochs"], 1), alpha=0.05
    )
    return keras.optimizers.AdamW(schedule, weight_decay=config["weight_decay"], global_clipnorm=1.0)


def steps_per_epoch(train, batch_size):
    if isinstance(train, tuple):
        return int(np.ceil(len(train[0]) / batch_size))
    steps = int(train.cardinality())
    return steps if steps > 0 else 1000  # unknown cardinality: the schedule's horizon
