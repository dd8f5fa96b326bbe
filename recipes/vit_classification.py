"""Train and evaluate a ViT classifier.

The default (`--dataset digits`) trains a small ViT from scratch on the
handwritten digits bundled with scikit-learn, so it needs no download; any
tensorflow-datasets image-classification set works with `--dataset tfds:NAME`
(e.g. `tfds:cifar10`), and an image-folder tree with `--dataset folder:PATH`
(`PATH/train/<class>/<image>`, `PATH/test/<class>/<image>`). The run saves a preset directory, a JSON of the
results, a training curve and a PNG of attention maps; killed at any moment,
a rerun with the same `--output` resumes after the last finished epoch.

    python -m recipes.vit_classification                  # digits, ~1 minute on 2 cores
    python -m recipes.vit_classification --smoke          # a few steps, for CI
    python -m recipes.vit_classification --dataset tfds:cifar10 --image-size 32 --patch-size 4
    python -m recipes.vit_classification --dataset folder:~/flowers --image-size 224 --patch-size 16
    python -m recipes.vit_classification --architecture swin   # a small Swin instead

`--architecture swin` trains a Swin Transformer of the same sizes instead:
`--num-layers` blocks split over two stages (the first `ceil(L / 2)`),
`--num-heads` heads doubling in the second stage, windows of 4 patches,
the MLP ratio `--mlp-dim / --hidden-dim`; it has no class token, so the
run draws no attention maps.
"""

import os

import keras
import numpy as np

import keras_vit
from keras_vit.data.digits import load_digits
from keras_vit.visualization import class_token_attention
from keras_vit.visualization import plot_attention_maps
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

CONFIG = {
    "dataset": "digits",
    "architecture": "vit",
    "image_size": 16,
    "patch_size": 2,
    "hidden_dim": 64,
    "num_layers": 4,
    "num_heads": 4,
    "mlp_dim": 128,
    "dropout_rate": 0.0,
    "drop_path_rate": 0.0,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 2e-3,
    "weight_decay": 0.05,
    "warmup_epochs": 2,
    "seed": 0,
    "mixed_precision": False,
    "data_dir": None,
    "offline": False,
}

SMOKE = {"epochs": 1, "num_layers": 1, "steps_per_epoch": 3}


def load_data(config):
    """Returns `(train, test, num_classes, channels)` of raw [0, 255] images:
    train/test are (x, y) numpy pairs for digits, batched `tf.data.Dataset`s
    for tfds and folders."""
    from recipes import folder_data

    dataset = config["dataset"]
    classes = digit_classes(dataset)
    if classes is not None:
        (x, y), (x_test, y_test) = load_digits(image_size=config["image_size"], seed=config["seed"])
        train_mask, test_mask = np.isin(y, classes), np.isin(y_test, classes)
        # Raw pixels in [0, 255], as every preset takes them (keras-vit predict
        # reads image files); labels from 0 for a range of digits.
        return (
            (x[train_mask] * 255.0, y[train_mask] - classes[0]),
            (x_test[test_mask] * 255.0, y_test[test_mask] - classes[0]),
            len(classes),
            1,
        )
    if dataset.startswith("tfds:"):
        return _load_tfds(dataset[len("tfds:"):], config)
    folder = folder_data.parse(dataset)
    if folder is not None:
        train, test, class_names, channels = folder_data.classification(folder, config)
        train, test = pipeline(train, test, config)
        return train, test, len(class_names), channels
    raise ValueError(
        f"dataset must be 'digits', 'digits:A-B', 'tfds:NAME' or 'folder:PATH'. Received: dataset={dataset!r}"
    )


def digit_classes(dataset):
    """The digit classes of `digits` (0-9) or `digits:A-B` (e.g. `digits:5-9`),
    or None for other datasets; a ValueError for a malformed range."""
    if dataset == "digits":
        return list(range(10))
    if not dataset.startswith("digits:"):
        return None
    try:
        first, last = (int(part) for part in dataset[len("digits:"):].split("-"))
    except ValueError:
        first = last = None
    if first is None or not 0 <= first < last <= 9:
        raise ValueError(f"dataset digits:A-B needs 0 <= A < B <= 9, e.g. digits:5-9. Received: dataset={dataset!r}")
    return list(range(first, last + 1))


def _load_tfds(name, config):
    from recipes import tfds_data

    tfds_data.import_tfds()  # a clear message when tensorflow-datasets is missing
    import tensorflow as tf

    (train, test), info = tfds_data.load(
        name, ["train", "test"], data_dir=config["data_dir"], download=not config["offline"], as_supervised=True
    )
    size = config["image_size"]

    def prepare(image, label):
        # Raw pixels in [0, 255], resized to one shape so that they batch; the
        # model's preprocessor normalises them inside fit/evaluate/predict.
        return tf.image.resize(tf.cast(image, "float32"), (size, size)), label

    train = train.shuffle(10_000, seed=config["seed"]).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    test = test.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    train, test = pipeline(train, test, config)
    channels = info.features["image"].shape[-1]
    return train, test, info.features["label"].num_classes, channels


def pipeline(train, test, config):
    """Batched, prefetched `(train, test)` from unbatched, shuffled
    `(image, label)` sets of `image_size` float images: training images get
    the Inception crop (a random crop of 5-100% of the area, aspect 3/4-4/3,
    resized back; big_vision's `inception_crop` for ViT fine-tuning) and a
    random horizontal flip, each in parallel."""
    import tensorflow as tf

    size = config["image_size"]

    def augment(image, label):
        begin, extent, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image), tf.zeros((0, 0, 4)), area_range=(0.05, 1.0), aspect_ratio_range=(0.75, 4 / 3),
            use_image_if_no_bounding_boxes=True,
        )
        channels = image.shape[-1]
        image = tf.ensure_shape(tf.image.resize(tf.slice(image, begin, extent), (size, size)), (size, size, channels))
        return tf.image.random_flip_left_right(image), label

    batch = config["batch_size"]
    train = train.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)
    return train, test.batch(batch).prefetch(tf.data.AUTOTUNE)


def build_model(config, num_classes, channels):
    dtype = dtype_policy(config)
    # Raw inputs in [0, 255] (digits, tfds and folders) map to [-1, 1].
    preprocessor = keras_vit.ViTImagePreprocessor(
        config["image_size"], mean=0.5, std=0.5, scale=1.0 / 255.0, name="preprocessor"
    )
    if config.get("architecture") == "swin":
        return keras_vit.Swin(small_swin(config, dtype, channels), num_classes=num_classes, preprocessor=preprocessor, dtype=dtype)
    backbone = small_backbone(config, dtype, channels=channels)
    return keras_vit.ViT(backbone, num_classes=num_classes, preprocessor=preprocessor, dtype=dtype)


def small_swin(config, dtype=None, channels=3):
    """The from-scratch Swin of `--architecture swin` (see the module's doc)."""
    layers = config["num_layers"]
    depths = (layers,) if layers < 2 else ((layers + 1) // 2, layers // 2)
    return keras_vit.SwinBackbone(
        image_shape=(config["image_size"], config["image_size"], channels),
        patch_size=config["patch_size"],
        hidden_dim=config["hidden_dim"],
        depths=depths,
        num_heads=tuple(config["num_heads"] * 2**i for i in range(len(depths))),
        window_size=4,
        mlp_ratio=config["mlp_dim"] / config["hidden_dim"],
        dropout_rate=config.get("dropout_rate", 0.0),
        drop_path_rate=config["drop_path_rate"],
        dtype=dtype,
    )


def run(config, output_dir, verbose=1):
    """Trains, evaluates and saves; returns a dict of results.

    Crash-safe: a rerun with the same `output_dir` resumes after the last
    finished epoch (`keras_vit.callbacks.CrashSafeBackup`); on the bundled
    digits it ends with exactly the weights of an uninterrupted run. Every
    output is written atomically, and the backup is deleted only once they
    all are.
    """
    return run_distributed(_run, config, output_dir, verbose)


def _run(config, output_dir, verbose, plan):
    keras.utils.set_random_seed(config["seed"])
    os.makedirs(output_dir, exist_ok=True)
    train, test, num_classes, channels = load_data(config)
    model = build_model(config, num_classes, channels)
    backup, metrics = fit_and_evaluate(model, train, test, config, output_dir, verbose, plan)

    results = {"test_accuracy": float(metrics["accuracy"]), "test_loss": float(metrics["loss"])}
    if isinstance(test, tuple) and isinstance(model, keras_vit.ViT):
        results["attention_png"] = save_attention_png(model, test[0][:8], test[1][:8], output_dir)
    curve = training_curve_figure(backup.history, ("loss",), ("accuracy",), "training accuracy")
    return finish_run(model, backup, output_dir, "vit_classification", config, results, curve, plan)


def cosine_adamw(config, model, total, warmup):
    """AdamW (weight decay from the config, clipping at global norm 1) with a
    linear warm-up to the config's learning rate and a cosine decay."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else config["learning_rate"], total - warmup,
        warmup_target=config["learning_rate"] if warmup else None, warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(schedule, weight_decay=config["weight_decay"], global_clipnorm=1.0)


def fit_and_evaluate(model, train, test, config, output_dir, verbose, plan, optimizer=cosine_adamw):
    """Compiles `model` with `optimizer(config, model, total_steps,
    warmup_steps)`, trains it crash-safe on `train` and evaluates it on
    `test` (numpy pairs or batched tf.data sets); returns `(backup, metrics)`."""
    if isinstance(train, tuple):
        steps = int(np.ceil(len(train[0]) / config["batch_size"]))
    else:
        steps = int(train.cardinality())
    steps = config.get("steps_per_epoch") or steps
    total = max(steps * config["epochs"], 1)
    warmup = min(steps * config["warmup_epochs"], total // 2)
    model.compile(optimizer=optimizer(config, model, total, warmup))
    if isinstance(train, tuple):
        x, y = train
        if config.get("steps_per_epoch"):
            x, y = x[: steps * config["batch_size"]], y[: steps * config["batch_size"]]
        # The order of each epoch's batches depends on (seed, epoch) only, so a
        # resumed run sees the batches the uninterrupted run would have.
        backup = fit_crash_safe(model, (x, y), config, output_dir, verbose=verbose, plan=plan)
        return backup, _evaluate_arrays(model, test, plan)
    fit_args = {"steps_per_epoch": config["steps_per_epoch"]} if config.get("steps_per_epoch") else {}
    backup = fit_crash_safe(model, train, config, output_dir, verbose=verbose, plan=plan, **fit_args)
    # Under data parallelism only whole global batches run (results.json says so).
    return backup, model.evaluate(plan.distribute_dataset(test, config["batch_size"]), verbose=0, return_dict=True)


def _evaluate_arrays(model, test, plan):
    """Held-out accuracy and loss of numpy arrays: `evaluate` on one device;
    under data parallelism through `predict` (which pads to whole batches),
    since `evaluate` cannot split a partial last batch over the replicas."""
    if plan.mode == "none":
        return model.evaluate(*test, batch_size=256, verbose=0, return_dict=True)
    logits = np.asarray(keras.ops.convert_to_numpy(model.predict(test[0], batch_size=256, verbose=0)), "float32")
    loss = keras.losses.sparse_categorical_crossentropy(test[1], logits, from_logits=True)
    return {
        "accuracy": float(np.mean(np.argmax(logits, -1) == test[1])),
        "loss": float(np.mean(keras.ops.convert_to_numpy(loss))),
    }


def save_attention_png(model, images, labels, output_dir):
    """Class-token attention of the last block over a few held-out (raw) images."""
    maps = model.backbone.attention_maps(model.preprocessor(images))
    attention = {k: keras.ops.convert_to_numpy(v) for k, v in maps["attention"].items()}
    predicted = np.argmax(keras.ops.convert_to_numpy(model.predict(images, verbose=0)), -1)
    titles = [f"label {t}, pred {p}" for t, p in zip(labels, predicted)]
    figure = plot_attention_maps(
        images, class_token_attention(attention, model.backbone.grid_size), titles
    )
    path = os.path.join(output_dir, "attention_maps.png")
    return save_figure(figure, path, dpi=120)


def parse_args(argv=None, **parser_options):
    parser = recipe_parser(__doc__, **parser_options)
    add_run_arguments(parser, "digits", "runs/vit_classification")
    parser.add_argument("--architecture", default=None, choices=("vit", "swin"), help="the model to train (default: vit)")
    add_config_arguments(
        parser,
        int_keys=(
            "image_size", "patch_size", "hidden_dim", "num_layers", "num_heads", "mlp_dim", "epochs", "batch_size", "seed",
        ),
        float_keys=("learning_rate", "weight_decay", "dropout_rate", "drop_path_rate"),
        defaults=CONFIG,
    )
    args = parser.parse_args(argv)
    return config_from_args(args, CONFIG, SMOKE), args.output


def main(argv=None, **parser_options):
    return recipe_main(parse_args, run, argv, **parser_options)


if __name__ == "__main__":
    main()
