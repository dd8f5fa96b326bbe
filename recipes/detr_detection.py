"""Train and evaluate DETR for object detection.

The default (`--dataset shapes`) trains a small DETR from scratch on a
procedurally generated dataset of coloured rectangles, ellipses and triangles
(fixed seed, no download) and reports COCO metrics on held-out images. COCO 2017
comes through tensorflow-datasets with `--dataset tfds:coco/2017`, with DETR's
augmentation (random horizontal flip, random resize of the shorter side, and a
random crop half of the time), optionally starting from a pretrained preset
(`--preset detr_r50`). Any COCO-format data on disk works with
`--dataset folder:PATH` (`PATH/annotations/instances_train*.json` with
`PATH/train*/`, and a `val*` split for evaluation). The run saves a
preset directory, results.json, a training-curve PNG and PNGs of predicted
boxes; killed at any moment, a rerun resumes after the last finished epoch.

    python -m recipes.detr_detection                      # shapes, ~10 minutes on 2 cores
    python -m recipes.detr_detection --smoke              # a few steps, for CI
    python -m recipes.detr_detection --dataset tfds:coco/2017 --preset detr_r50 --image-size 800 --epochs 1
    python -m recipes.detr_detection --backbone swin_t    # a new DETR on Swin-T's ImageNet weights
    python -m recipes.detr_detection --backbone vitdet    # a small ViTDet from scratch instead of the ResNet

`--backbone NAME` builds a new DETR on the backbone of a multi-scale preset
(`swin_t`, `vitdet_b`, ...: its P5 level feeding the transformer, built at
`--image-size`), trained at `--backbone-learning-rate`; the default is a
small ResNet from scratch, `--backbone vitdet` a small ViTDet from scratch
(`SMALL_VITDET`, its P5 at stride 16 like the ResNet's dilated last stage).
"""

import os

import keras
import numpy as np

import keras_vit
from keras_vit import tuning
from keras_vit.data.shapes import SHAPE_CLASSES
from keras_vit.data.shapes import make_shapes
from keras_vit.metrics import coco_evaluate
from keras_vit.presets.detr_presets import build_detr
from keras_vit.visualization import plot_detections
from recipes.common import PeriodicEvaluation
from recipes.common import add_config_arguments
from recipes.common import add_run_arguments
from recipes.common import config_from_args
from recipes.common import dtype_policy
from recipes.common import finish_run
from recipes.common import fit_crash_safe
from recipes.common import recipe_main
from recipes.common import recipe_parser
from recipes.common import run_distributed
from recipes.common import save_figure
from recipes.common import training_curve_figure

CONFIG = {
    "dataset": "shapes",
    "image_size": 96,
    "num_train": 3000,
    "num_test": 300,
    "max_objects": 3,
    "preset": None,
    "backbone": None,
    "hidden_dim": 64,
    "num_heads": 4,
    "encoder_layers": 2,
    "decoder_layers": 3,
    "ffn_dim": 128,
    "num_queries": 10,
    "dropout_rate": 0.0,
    "epochs": 40,
    "batch_size": 32,
    "learning_rate": 5e-4,  # from scratch; 1e-4 from a preset (DETR's fine-tuning)
    "backbone_learning_rate": 1e-5,  # from a preset only
    "weight_decay": 1e-4,
    "clip_norm": 0.1,
    "eval_every": 5,
    "seed": 0,
    "mixed_precision": False,
    "data_dir": None,
    "offline": False,
    "matching": "host",
}

SMOKE = {"epochs": 1, "num_train": 64, "num_test": 16, "eval_every": 1}

# `--backbone vitdet`: a ViTDet from scratch at the ResNet default's scale
# (about 0.5M weights; 8-pixel patches, so the pyramid's P5 is at stride 16).
SMALL_VITDET = {
    "patch_size": 8, "hidden_dim": 96, "num_layers": 4, "num_heads": 3, "window_size": 6,
    "global_attention_blocks": (1, 3), "pretrain_image_size": 96, "pyramid_dim": 64,
}

# DETR's multi-scale training sizes for the shorter side (scaled by image_size / 800).
COCO_SCALES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)


# ----------------------------------------------------------------------- data


def load_data(config):
    """Returns `(train, test, class_names)`.

    shapes: numpy `(images, targets)` pairs. tfds and folders: `tf.data.Dataset`s of
    `({"images", "pixel_mask"}, {"boxes", "labels"})` with pixel xyxy boxes.
    """
    dataset = config["dataset"]
    if dataset == "shapes":
        size, objects = config["image_size"], config["max_objects"]
        train = make_shapes(config["num_train"], size, objects, seed=config["seed"])
        test = make_shapes(config["num_test"], size, objects, seed=config["seed"] + 1)
        return train, test, list(SHAPE_CLASSES)
    if dataset.startswith("tfds:"):
        return _load_tfds(dataset[len("tfds:"):], config)
    from recipes import folder_data

    folder = folder_data.parse(dataset)
    if folder is not None:
        train, test, class_names = folder_data.detection(folder, config)
        return (*pipeline(train, test, config), class_names)
    raise ValueError(f"dataset must be 'shapes', 'tfds:NAME' or 'folder:PATH'. Received: dataset={dataset!r}")


def _load_tfds(name, config):
    """COCO-style tfds detection data: `image`, `objects/bbox` (rel yxyx), `objects/label`."""
    from recipes import tfds_data

    tfds_data.import_tfds()  # a clear message when tensorflow-datasets is missing
    (train, test), info = tfds_data.load(
        name, ["train", "validation"], data_dir=config["data_dir"], download=not config["offline"]
    )
    train = train.shuffle(1000, seed=config["seed"])
    return (*pipeline(train, test, config), info.features["objects"]["label"].names)


def pipeline(train, test, config):
    """Batched, prefetched `(train, test)` from unbatched (training: shuffled)
    tfds-`coco`-style examples: DETR's training augmentation (flip, crop,
    multi-scale resize) and padding, each map in parallel."""
    import tensorflow as tf

    size, max_objects = config["image_size"], 100
    scales = [s * size / 800 for s in COCO_SCALES]

    def to_pixels(example):
        image = tf.cast(example["image"], "float32")
        height, width = tf.cast(tf.shape(image)[0], "float32"), tf.cast(tf.shape(image)[1], "float32")
        objects = example["objects"]
        # The same length for every object field (tfds' mock data draws them independently).
        fields = [objects[k] for k in ("bbox", "label", "is_crowd") if k in objects]
        count = tf.reduce_min([tf.shape(f)[0] for f in fields])
        bbox, label = objects["bbox"][:count], objects["label"][:count]
        keep = tf.logical_not(objects["is_crowd"][:count]) if "is_crowd" in objects else tf.ones_like(label, bool)
        y0, x0, y1, x1 = tf.unstack(tf.boolean_mask(bbox, keep), axis=-1)
        boxes = tf.stack([x0 * width, y0 * height, x1 * width, y1 * height], axis=-1)
        return image, boxes, tf.cast(tf.boolean_mask(label, keep), "int32")

    def resize(image, boxes, shorter):
        shape = tf.cast(tf.shape(image)[:2], "float32")
        factor = tf.minimum(shorter / tf.reduce_min(shape), size / tf.reduce_max(shape))
        new = tf.cast(tf.round(shape * factor), "int32")
        return tf.image.resize(image, new), boxes * factor

    def flip(image, boxes):
        width = tf.cast(tf.shape(image)[1], "float32")
        mirrored = tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=-1)
        return image[:, ::-1], mirrored

    def crop(image, boxes, labels):
        shape = tf.cast(tf.shape(image)[:2], "float32")
        extent = shape * tf.random.uniform((2,), 0.6, 1.0)
        top_left = tf.random.uniform((2,), 0, 1) * (shape - extent)
        offset, size_px = tf.cast(top_left, "int32"), tf.cast(extent, "int32")
        image = image[offset[0]:offset[0] + size_px[0], offset[1]:offset[1] + size_px[1]]
        shift = tf.stack([top_left[1], top_left[0], top_left[1], top_left[0]])
        limit = tf.stack([extent[1], extent[0], extent[1], extent[0]])
        boxes = tf.clip_by_value(boxes - shift, 0.0, limit)
        keep = tf.logical_and(boxes[:, 2] > boxes[:, 0], boxes[:, 3] > boxes[:, 1])
        return image, tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)

    def augment(image, boxes, labels):
        # Explicit tf.cond (no autograph): a random horizontal flip, then half
        # the time a random crop (DETR: resize to 400-600, crop 384-600), then
        # a random resize of the shorter side to one of the scales.
        image, boxes = tf.cond(tf.random.uniform(()) < 0.5, lambda: flip(image, boxes), lambda: (image, boxes))
        image, boxes, labels = tf.cond(
            tf.random.uniform(()) < 0.5, lambda: crop(image, boxes, labels), lambda: (image, boxes, labels)
        )
        shorter = tf.gather(scales, tf.random.uniform((), 0, len(scales), dtype="int32"))
        image, boxes = resize(image, boxes, shorter)
        return image, boxes, labels

    def pad(image, boxes, labels):
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        mask = tf.ones((height, width), bool)
        image = tf.image.pad_to_bounding_box(image, 0, 0, size, size)
        mask = tf.image.pad_to_bounding_box(tf.cast(mask[..., None], "uint8"), 0, 0, size, size)[..., 0] > 0
        count = tf.minimum(tf.shape(labels)[0], max_objects)
        boxes = tf.pad(boxes[:count], [[0, max_objects - count], [0, 0]])
        labels = tf.pad(labels[:count], [[0, max_objects - count]], constant_values=-1)
        return {"images": image, "pixel_mask": mask}, {"boxes": boxes, "labels": labels}

    batch = config["batch_size"]
    parallel = tf.data.AUTOTUNE
    train = (
        train.map(to_pixels, num_parallel_calls=parallel)
        .map(augment, num_parallel_calls=parallel)
        .map(pad, num_parallel_calls=parallel)
        .batch(batch, drop_remainder=True)
        .prefetch(parallel)
    )
    test = (
        test.map(to_pixels, num_parallel_calls=parallel)
        .map(lambda image, boxes, labels: (*resize(image, boxes, float(size)), labels), num_parallel_calls=parallel)
        .map(pad, num_parallel_calls=parallel)
        .batch(batch)
        .prefetch(parallel)
    )
    return train, test


# ---------------------------------------------------------------------- model


def build_model(config, num_classes):
    dtype = dtype_policy(config)
    common = dict(
        bounding_box_format="xyxy", matching=config["matching"], dropout_rate=config["dropout_rate"], dtype=dtype
    )
    if config["preset"]:
        return keras_vit.DETR.from_preset(config["preset"], num_classes=num_classes, **common)
    backbone = {"depth": (1, 1, 1, 1), "stem_filters": 16, "stage_filters": (32, 64, 128, 256), "dilate_last_stage": True}
    size = config["image_size"]
    if config["backbone"] == "vitdet":
        backbone = keras.saving.serialize_keras_object(
            keras_vit.ViTDetBackbone(image_shape=(size, size, 3), **SMALL_VITDET, dtype=dtype)
        )
    elif config["backbone"]:
        backbone = keras.saving.serialize_keras_object(pyramid_backbone(config["backbone"], dtype, size))
    sizes = ("num_queries", "hidden_dim", "num_heads", "encoder_layers", "decoder_layers", "ffn_dim")
    model = build_detr({"backbone": backbone, "num_classes": num_classes, **{k: config[k] for k in sizes}}, **common)
    if pretrained_backbone(config):
        # build_detr rebuilds the backbone from its config: the preset's weights again.
        model.backbone.set_weights(pyramid_backbone(config["backbone"], dtype, size).get_weights())
    return model


def pretrained_backbone(config):
    """Whether `--backbone` names pretrained weights (not `vitdet` from scratch)."""
    return config["backbone"] not in (None, "vitdet")


def pyramid_backbone(name, dtype=None, image_size=None):
    """The backbone of a multi-scale preset (`swin_t`, `vitdet_b`, ..., or
    such a preset directory) with its weights: for any input size, or built
    at `image_size` when the backbone has a fixed input (ViTDet)."""
    from keras_vit.backbones.backbone import FeaturePyramid
    from keras_vit.presets.registry import family_of_preset

    if os.path.isdir(name):  # a preset directory (a Swin classifier's or backbone's)
        from keras_vit.presets.preset_directory import read_preset_directory
        from keras_vit.presets.registry import family_of_class

        family = family_of_class(read_preset_directory(name, load_weights=False)[0])
        if family is None:
            raise ValueError(f"backbone: {name} holds no keras_vit preset of a known family.")
    else:
        family = family_of_preset(name)
    cls = keras.saving.get_registered_object(family.backbone)
    if not issubclass(cls, FeaturePyramid) or family.name == "detr":
        choices = sorted(
            n for f in keras_vit.presets.registry.families().values() if f.name != "detr"
            and issubclass(keras.saving.get_registered_object(f.backbone), FeaturePyramid) for n in f.presets
        )
        raise ValueError(
            f"backbone must be a preset of a multi-scale backbone, one of {choices} (for a DETR preset's own "
            f"backbone, use --preset). Received: backbone={name!r}"
        )
    size = (image_size, image_size) if cls.fixed_input_size else (None, None)
    return cls.from_preset(name, image_size=size, dtype=dtype)


def evaluate(model, test, batch_size, verbose=False):
    """COCO metrics of the model's detections on numpy pairs or a tf.data set;
    `verbose`: a progress bar."""
    truths, predictions = {"boxes": [], "labels": []}, {"boxes": [], "labels": [], "scores": []}
    batches = [test] if isinstance(test, tuple) else test.as_numpy_iterator()
    progress = keras.utils.Progbar(None, unit_name="batch") if verbose else None
    for x, y in batches:
        if progress is not None:
            progress.add(1)
        images, mask = (x["images"], x["pixel_mask"]) if isinstance(x, dict) else (x, None)
        detections = model.predict_detections(np.asarray(images, "float32"), mask, batch_size=batch_size)
        for key in predictions:
            predictions[key].append(detections[key])
        truths["boxes"].append(y["boxes"])
        truths["labels"].append(y["labels"])
    truths = {k: np.concatenate(v) for k, v in truths.items()}
    predictions = {k: np.concatenate(v) for k, v in predictions.items()}
    metrics = coco_evaluate(
        truths["boxes"], truths["labels"], predictions["boxes"], predictions["labels"], predictions["scores"]
    )
    return metrics, predictions


def run(config, output_dir, verbose=2):
    """Trains, evaluates and saves; returns a dict of results.

    Crash-safe as the classification recipe: a rerun with the same
    `output_dir` resumes after the last finished epoch, on the generated
    shapes with exactly the weights of an uninterrupted run.
    """
    # --distribute model: DETR's own layout map (ResNet channels, transformer kernels).
    return run_distributed(_run, config, output_dir, verbose, layout_map=keras_vit.DETR.get_layout_map)


def _run(config, output_dir, verbose, plan):
    keras.utils.set_random_seed(config["seed"])
    os.makedirs(output_dir, exist_ok=True)
    train, test, class_names = load_data(config)
    model = build_model(config, len(class_names))  # built: CrashSafeBackup needs it
    steps = int(np.ceil(len(train[0]) / config["batch_size"])) if isinstance(train, tuple) else None
    if steps is not None:
        schedule = keras.optimizers.schedules.CosineDecay(
            config["learning_rate"], steps * config["epochs"], alpha=0.05
        )
    else:
        schedule = config["learning_rate"]
    if config["preset"] or pretrained_backbone(config):
        # Fine-tuning as the original: the stem and layer1 frozen (every
        # BatchNorm already is), the backbone at a tenth of the learning rate.
        # A pretrained backbone alone trains at backbone_learning_rate too.
        if config["preset"]:
            model = tuning.prepare(model, "full")
        optimizer = tuning.detr_finetuning_optimizer(
            model, schedule, config["backbone_learning_rate"], config["weight_decay"], config["clip_norm"]
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config["weight_decay"], global_clipnorm=config["clip_norm"])
    model.compile(optimizer=optimizer)
    evaluation = PeriodicEvaluation(
        lambda m: evaluate(m, test, config["batch_size"] * 4)[0], config["eval_every"],
        lambda row: f"AP {row['AP']:.3f}, AP50 {row['AP50']:.3f}",
        at_end=False,  # the run evaluates after training anyway (and draws those predictions)
    )
    if isinstance(train, tuple):
        train = (train[0].astype("float32"), train[1])
    backup = fit_crash_safe(model, train, config, output_dir, evaluation, verbose, plan=plan)
    metrics, predictions = evaluate(model, test, config["batch_size"] * 4)

    results = {"coco": metrics, "evaluations": evaluation.history, "loss": [row["loss"] for row in backup.history]}
    if isinstance(test, tuple):
        results["detections_png"] = save_detections_png(test, predictions, class_names, output_dir)
    curve = training_curve_figure(backup.history, ("loss",), ("AP50", "AP"), "held-out COCO AP", evaluation.history)
    return finish_run(model, backup, output_dir, "detr_detection", config, results, curve, plan, class_names)


def save_detections_png(test, predictions, class_names, output_dir, count=8):
    images, truths = test
    figure = plot_detections(
        images[:count], {k: v[:count] for k, v in predictions.items()}, class_names,
        truths={k: v[:count] for k, v in truths.items()},
    )
    return save_figure(figure, os.path.join(output_dir, "detections.png"))


def parse_args(argv=None, **parser_options):
    parser = recipe_parser(__doc__, **parser_options)
    add_run_arguments(parser, "shapes", "runs/detr_detection", preset="start from a DETR preset (e.g. detr_r50)")
    parser.add_argument("--matching", default=None, choices=["host", "ops"])
    parser.add_argument(
        "--backbone", default=None,
        help="a new DETR on this multi-scale preset's backbone with its weights (e.g. swin_t, vitdet_b), or "
        "'vitdet' for a small ViTDet from scratch; default: a small ResNet from scratch",
    )
    add_config_arguments(
        parser,
        int_keys=(
            "image_size", "num_train", "num_test", "max_objects", "hidden_dim", "num_heads", "encoder_layers",
            "decoder_layers", "ffn_dim", "num_queries", "epochs", "batch_size", "eval_every", "seed",
        ),
        float_keys=("learning_rate", "backbone_learning_rate", "weight_decay", "clip_norm", "dropout_rate"),
        defaults=CONFIG,
    )
    args = parser.parse_args(argv)
    config = config_from_args(args, CONFIG, SMOKE)
    if args.preset and args.backbone:
        parser.error("--backbone builds a new DETR; --preset starts from a whole DETR: give one of them")
    if args.preset and args.learning_rate is None:
        config["learning_rate"] = 1e-4  # DETR's fine-tuning rate for the transformer
    return config, args.output


def main(argv=None, **parser_options):
    return recipe_main(parse_args, run, argv, **parser_options)


if __name__ == "__main__":
    main()
