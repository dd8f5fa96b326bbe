"""Train and evaluate a semantic-segmentation model.

The default (`--dataset scenes`) trains a small model from scratch on the
embedded procedural rooms of `keras_vit.data.scenes` (wall, floor, boxes and
spheres; exact per-pixel classes; no download) and reports held-out mean IoU
and pixel accuracy beside the trivial baseline of predicting the training
set's most frequent class everywhere. `--model` picks the model: `dpt` (DPT:
reassemble and fusion blocks on four depths of the ViT), `segmenter`
(Segmenter's mask transformer) or `segmenter_linear` (Segmenter's linear
decoder on the same encoder). ADE20K comes
through tensorflow-datasets with `--dataset tfds:scene_parse150` (150
classes, label 0 ignored; mmsegmentation's random resize, crop and flip),
optionally starting from a pretrained preset (`--preset dpt_hybrid_ade`,
`--model segmenter --preset seg_tiny_mask`); image/mask pairs on disk
come with `--dataset folder:PATH` (`PATH/train/images/<name>.png|jpg` with
`PATH/train/masks/<name>.png` of class indices, 255 ignored, the same under
`PATH/test`, class names in an optional `PATH/classes.txt`). `--optimizer sgd` trains with
Segmenter's official schedule (SGD, momentum 0.9, Nesterov, polynomial
decay); the default is AdamW with cosine decay.
The run saves a preset directory, results.json, a training-curve PNG and a
PNG of predicted and true masks over the images; killed at any moment, a
rerun resumes after the last finished epoch.

    python -m recipes.segmentation              # scenes, about 8 minutes on 2 cores
    python -m recipes.segmentation --smoke      # a few steps, for CI
    python -m recipes.segmentation --model segmenter
    python -m recipes.segmentation --dataset tfds:scene_parse150 --preset dpt_hybrid_ade --image-size 480 --epochs 1
"""

import os

import keras
import numpy as np

import keras_vit
from keras_vit.data.scenes import SCENE_CLASSES
from keras_vit.metrics.dense import SegmentationAccuracy
from keras_vit.metrics.dense import SegmentationMeanIoU
from keras_vit.models.dense_task import resize_numpy
from keras_vit.visualization import plot_segmentation
from recipes import dense_common
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
from recipes.common import small_backbone
from recipes.common import training_curve_figure

MODELS = ("dpt", "segmenter", "segmenter_linear")
# Patch size by model when not given: DPT's output is 16x its patch grid (16
# gives the input size); Segmenter upsamples its patch-level masks, so a finer
# grid (8) draws finer boundaries.
PATCH_SIZES = {"dpt": 16, "segmenter": 8, "segmenter_linear": 8}
OPTIMIZERS = ("adamw", "sgd")

CONFIG = {
    "dataset": "scenes",
    "model": "dpt",
    "image_size": 64,
    "num_train": 3000,
    "num_test": 300,
    "max_objects": 3,
    "preset": None,
    "patch_size": None,
    "hidden_dim": 96,
    "num_layers": 4,
    "num_heads": 3,
    "mlp_dim": 192,
    "fusion_width": 48,
    "drop_path_rate": 0.0,
    "epochs": 15,
    "batch_size": 16,
    "optimizer": "adamw",
    "learning_rate": 5e-4,
    "weight_decay": 1e-4,
    "eval_every": 5,
    "seed": 0,
    "mixed_precision": False,
    "data_dir": None,
    "offline": False,
}

SMOKE = {"epochs": 1, "num_train": 32, "num_test": 8, "eval_every": 1}

IGNORE_INDEX = dense_common.IGNORE_INDEX

# ADE20K's crop and batch by model when not given: Segmenter's official 512
# crops at batch 8; DPT's ADE20K releases run at 480.
ADE20K = {"segmenter": (512, 8), "segmenter_linear": (512, 8), "dpt": (480, 8)}


def load_data(config):
    """`(train, test, class_names)`: numpy `(images, labels)` pairs (scenes) or batched tf.data sets."""
    dense_common.check_dataset(config["dataset"], "scenes")
    if config["dataset"] == "scenes":
        (images, _, labels), (test_images, _, test_labels) = dense_common.scenes(config)
        return (images, labels), (test_images, test_labels), list(SCENE_CLASSES)
    if config["dataset"].startswith("folder:"):
        from recipes import folder_data

        return dense_common.folder_segmentation(folder_data.parse(config["dataset"]), config)
    return dense_common.tfds_segmentation(config["dataset"][len("tfds:"):], config)


def build_model(config, num_classes):
    if config["model"] not in MODELS:
        raise ValueError(f"model must be one of {MODELS}. Received: model={config['model']!r}")
    dtype = dtype_policy(config)
    task = keras_vit.DPTImageSegmenter if config["model"] == "dpt" else keras_vit.Segmenter
    if config["preset"]:
        return task.from_preset(config["preset"], num_classes=num_classes, image_size=config["image_size"], dtype=dtype)
    config = resolve_config(config)
    if config["model"] == "dpt":
        return keras_vit.DPTImageSegmenter(
            small_backbone(config, dtype),
            num_classes=num_classes,
            **dense_common.dpt_neck(config),
            preprocessor=dense_common.preprocessor(config),
            dtype=dtype,
        )
    # Segmenter's LayerNorm epsilon (1e-5) in the encoder; the decoder's heads as the encoder's.
    return keras_vit.Segmenter(
        small_backbone(config, dtype, layer_norm_epsilon=1e-5),
        num_classes=num_classes,
        decoder="linear" if config["model"] == "segmenter_linear" else "mask_transformer",
        decoder_heads=config["num_heads"],
        preprocessor=dense_common.preprocessor(config),
        dtype=dtype,
    )


def optimizer(config, steps_per_epoch):
    """AdamW with cosine decay, or Segmenter's official SGD schedule over the run."""
    if config["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}. Received: optimizer={config['optimizer']!r}")
    if config["optimizer"] == "sgd":
        from keras_vit.models.segmenter import segmenter_optimizer

        return segmenter_optimizer("sgd", max(steps_per_epoch * config["epochs"], 1), config["learning_rate"])
    return dense_common.optimizer(config, steps_per_epoch)


def logits_of(model, images, batch_size):
    outputs = model.predict(images, batch_size=batch_size, verbose=0)
    if isinstance(outputs, dict):
        outputs = outputs["logits"]
    return np.asarray(keras.ops.convert_to_numpy(outputs), "float32")


def class_frequencies(train, num_classes, batch_size, limit=200):
    """Pixel counts of each class over the training labels (the first `limit`
    batches of a tf.data set), ignored pixels left out."""
    counts = np.zeros(num_classes, "int64")
    for index, (_, labels) in enumerate(dense_common.batches_of(train, batch_size)):
        labels = labels[(labels >= 0) & (labels < num_classes)]
        counts += np.bincount(labels.ravel(), minlength=num_classes)
        if index + 1 >= limit:
            break
    return counts


def evaluate(model, test, num_classes, batch_size, constant=None, verbose=False):
    """Mean IoU and pixel accuracy over the test set (Keras's MeanIoU with
    the ignore index) of the model, or of predicting class `constant`
    everywhere; `verbose`: a progress bar."""
    iou, accuracy = SegmentationMeanIoU(num_classes, IGNORE_INDEX), SegmentationAccuracy(IGNORE_INDEX)
    for images, labels in dense_common.batches_of(test, batch_size, verbose):
        if constant is None:
            logits = logits_of(model, images, batch_size)
        else:
            logits = np.zeros(labels.shape + (num_classes,), "float32")
            logits[..., constant] = 1.0
        iou.update_state(labels, logits)
        accuracy.update_state(labels, logits)
    return {"mean_iou": float(iou.result()), "pixel_accuracy": float(accuracy.result())}


def resolve_config(config):
    """The model's defaults where the config leaves them to it: the patch size
    by model, and on ADE20K the crop and batch by model (`ADE20K`) unless
    given."""
    if config["model"] in PATCH_SIZES and not config["patch_size"]:
        config = {**config, "patch_size": PATCH_SIZES[config["model"]]}
    if config["dataset"].startswith("tfds:scene_parse150") and config["model"] in ADE20K:
        size, batch = ADE20K[config["model"]]
        if config["image_size"] == CONFIG["image_size"]:
            config = {**config, "image_size": size}
        if config["batch_size"] == CONFIG["batch_size"]:
            config = {**config, "batch_size": batch}
    return config


def run(config, output_dir, verbose=2):
    """Trains, evaluates and saves; returns a dict of results. Crash-safe as
    the other recipes: a rerun with the same `output_dir` resumes after the
    last finished epoch, on the scenes with exactly the weights of an
    uninterrupted run."""
    config = resolve_config(config)
    return run_distributed(_run, config, output_dir, verbose)


def _run(config, output_dir, verbose, plan):
    keras.utils.set_random_seed(config["seed"])
    os.makedirs(output_dir, exist_ok=True)
    train, test, class_names = load_data(config)
    num_classes = len(class_names)
    model = build_model(config, num_classes)
    model.compile(  # the task's default loss (+ auxiliary) and metrics
        optimizer=optimizer(config, dense_common.steps_per_epoch(train, config["batch_size"])),
        ignore_index=IGNORE_INDEX,
    )
    eval_batch = config["batch_size"] * 4
    evaluation = PeriodicEvaluation(
        lambda m: evaluate(m, test, num_classes, eval_batch), config["eval_every"],
        lambda row: f"held-out mIoU {row['mean_iou']:.3f}, pixel accuracy {row['pixel_accuracy']:.3f}",
    )
    backup = fit_crash_safe(model, train, config, output_dir, evaluation, verbose, plan=plan)
    metrics = evaluation.history[-1] if evaluation.history else evaluate(model, test, num_classes, eval_batch)
    metrics = {k: metrics[k] for k in ("mean_iou", "pixel_accuracy")}
    majority = int(np.argmax(class_frequencies(train, num_classes, config["batch_size"])))
    baseline = evaluate(model, test, num_classes, eval_batch, constant=majority)

    images, labels = dense_common.first_examples(test, 6)
    logits = logits_of(model, images, 6)
    if logits.shape[1:3] != labels.shape[1:]:  # a preset whose output is not the input size
        logits = np.stack([resize_numpy(value, labels.shape[1:], "bilinear") for value in logits])
    predicted = np.argmax(logits, axis=-1)
    results = {
        "model": config["model"],
        "metrics": metrics,
        "baseline": {"predict": f"the majority class, {class_names[majority]!r}", **baseline},
        "evaluations": evaluation.history,
        "masks_png": save_figure(
            plot_segmentation(images, predicted, num_classes, labels, class_names, IGNORE_INDEX),
            os.path.join(output_dir, "masks.png"),
        ),
    }
    curve = training_curve_figure(
        backup.history, ("loss",), ("mean_iou", "pixel_accuracy"), "held-out", evaluation.history
    )
    return finish_run(model, backup, output_dir, "segmentation", config, results, curve, plan)


def parse_args(argv=None, **parser_options):
    parser = recipe_parser(__doc__, **parser_options)
    add_run_arguments(
        parser, "scenes", "runs/segmentation", preset="start from a preset (e.g. dpt_hybrid_ade, seg_tiny_mask)"
    )
    parser.add_argument("--model", default=CONFIG["model"], choices=MODELS)
    parser.add_argument("--optimizer", default=CONFIG["optimizer"], choices=OPTIMIZERS)
    add_config_arguments(
        parser,
        int_keys=dense_common.INT_KEYS,
        float_keys=("learning_rate", "weight_decay", "drop_path_rate"),
        defaults=CONFIG,
    )
    args = parser.parse_args(argv)
    return config_from_args(args, CONFIG, SMOKE), args.output


def main(argv=None, **parser_options):
    return recipe_main(parse_args, run, argv, **parser_options)


if __name__ == "__main__":
    main()
