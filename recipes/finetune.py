"""Fine-tune a classification preset on your images with any method of the ViT and VPT papers.

PRESET is a preset name (`keras-vit presets`), a preset folder (for example
the main job's `runs/vit_classification/preset`) or a checkpoint file. The
head is replaced for the dataset's classes (zero-initialised, as the ViT
paper does) and the model is prepared with `keras_vit.tuning.prepare`:
`--method full|linear|partial|bias|adapter|lora|vpt` (several joined by `+`,
e.g. `lora+bias`). The data: the bundled digits (`digits`, or a range of
classes such as `digits:5-9`, optionally only `--labels-per-class N` labelled
images per class), `tfds:NAME` or `folder:PATH` (`PATH/train/<class>/...`,
`PATH/test/<class>/...`). Grayscale data is repeated to RGB for RGB presets.

The run writes `preset/` (a normal preset: prompts and adapters included,
LoRA merged), `results.json` (accuracy, method, trainable and total
parameters), `training_curve.png`, and with `--save-delta` a
`delta.safetensors` of the tuned weights alone, loadable on the base with
`keras_vit.tuning.load_delta`. A rerun with the same `--output` resumes.

    keras-vit finetune runs/vit_classification/preset --dataset digits --method linear
    keras-vit finetune vit_b16 --dataset folder:~/flowers --method vpt --prompts 50 --deep --epochs 10
"""

import os

import keras
import numpy as np

from keras_vit import tuning
from keras_vit.presets.loader import classifier_class
from recipes.common import add_config_arguments
from recipes.common import add_run_arguments
from recipes.common import config_from_args
from recipes.common import dtype_policy
from recipes.common import finish_run
from recipes.common import recipe_main
from recipes.common import recipe_parser
from recipes.common import run_distributed
from recipes.common import training_curve_figure
from recipes.vit_classification import cosine_adamw
from recipes.vit_classification import digit_classes
from recipes.vit_classification import fit_and_evaluate
from recipes.vit_classification import load_data as classification_data
from recipes.vit_classification import pipeline

CONFIG = {
    "preset": None,
    "dataset": "digits",
    "labels_per_class": None,
    "image_size": None,  # None: the preset's
    "method": "full",
    "k": None,
    "rank": 4,
    "alpha": None,
    "prompts": 10,
    "deep": False,
    "prompt_dropout": 0.0,
    "reduction": 8,
    "head_init": "zeros",
    "from_scratch": False,
    "layer_decay": None,
    "optimizer": "adamw",
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": 0.05,
    "warmup_epochs": 1,
    "dropout_rate": None,
    "drop_path_rate": None,
    "seed": 0,
    "mixed_precision": False,
    "data_dir": None,
    "offline": False,
}

SMOKE = {"epochs": 1, "steps_per_epoch": 2}


def few_labels(x, y, per_class, seed):
    """The first `per_class` images of each class in a seeded shuffle."""
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(y):
        index = np.flatnonzero(y == label)
        if len(index) < per_class:
            raise ValueError(f"class {label} has {len(index)} training images, fewer than --labels-per-class {per_class}.")
        keep.extend(rng.permutation(index)[:per_class])
    keep = np.sort(np.asarray(keep))
    return x[keep], y[keep]


def load_data(config, image_size, channels):
    """`(train, test, num_classes)` of raw [0, 255] images with `channels`
    channels at `image_size`: numpy pairs for digits, batched tf.data sets
    otherwise."""
    from recipes import folder_data
    from recipes.vit_classification import _load_tfds

    classes = digit_classes(config["dataset"])
    if classes is not None:
        (x, y), (x_test, y_test), _, _ = classification_data(dict(config, image_size=image_size))
        if config["labels_per_class"]:
            x, y = few_labels(x, y, config["labels_per_class"], config["seed"])
        if channels != 1:
            x, x_test = np.repeat(x, channels, -1), np.repeat(x_test, channels, -1)
        return (x, y), (x_test, y_test), len(classes)
    if config["labels_per_class"]:
        raise ValueError("--labels-per-class applies to the bundled digits; make a smaller folder for other data.")
    local = dict(config, image_size=image_size)
    folder = folder_data.parse(config["dataset"])
    if folder is not None:
        train, test, class_names, data_channels = folder_data.classification(folder, local)
        train, test = (_to_channels(d, data_channels, channels) for d in (train, test))
        train, test = pipeline(train, test, local)
        return train, test, len(class_names)
    if config["dataset"].startswith("tfds:"):
        train, test, num_classes, data_channels = _load_tfds(config["dataset"][len("tfds:"):], local)
        train, test = (_to_channels(d, data_channels, channels) for d in (train, test))
        return train, test, num_classes
    raise ValueError(
        f"dataset must be 'digits', 'digits:A-B', 'tfds:NAME' or 'folder:PATH'. Received: dataset={config['dataset']!r}"
    )


def _to_channels(dataset, have, want):
    import tensorflow as tf

    if have == want:
        return dataset
    if have == 1 and want == 3:
        return dataset.map(lambda image, label: (tf.image.grayscale_to_rgb(image), label))
    if have == 3 and want == 1:
        return dataset.map(lambda image, label: (tf.image.rgb_to_grayscale(image), label))
    raise ValueError(f"The data has {have} channels and the preset takes {want}; convert the images first.")


def methods(config):
    return config["method"].split("+")


def tuning_options(config):
    """`prepare` options of the chosen methods, from the config."""
    chosen = methods(config)
    options = {}
    if "partial" in chosen:
        options["k"] = config["k"]
    if "lora" in chosen:
        options.update(rank=config["rank"], alpha=config["alpha"])
    if "vpt" in chosen:
        options.update(num_prompts=config["prompts"], deep=config["deep"], prompt_dropout=config["prompt_dropout"])
    if "adapter" in chosen:
        options["reduction"] = config["reduction"]
    if config["head_init"] != "zeros":
        options["head_initializer"] = keras.initializers.TruncatedNormal(stddev=0.02, seed=config["seed"])
    return options


def build_model(config, num_classes):
    """The preset with a head for `num_classes` (zero-initialised when the
    class count changes), prepared for the method."""
    overrides = {"dtype": dtype_policy(config)} if dtype_policy(config) else {}
    for key in ("dropout_rate", "drop_path_rate"):
        if config[key] is not None:
            overrides[key] = config[key]
    model = classifier_class(config["preset"]).from_preset(
        config["preset"], num_classes=num_classes, image_size=config["image_size"],
        load_weights=not config["from_scratch"], **overrides
    )
    return tuning.prepare(model, methods(config), **tuning_options(config))


def make_optimizer(config, model, total, warmup):
    """The classification recipe's AdamW, or the ViT paper's SGD; with
    layer-wise learning-rate decay when asked."""
    if config["optimizer"] == "sgd":
        optimizer = tuning.vit_finetuning_optimizer(total, config["learning_rate"], warmup_steps=warmup)
    else:
        optimizer = cosine_adamw(config, model, total, warmup)
    if config["layer_decay"] is not None:
        optimizer = tuning.layer_decay(optimizer, model, config["layer_decay"])
    return optimizer


def preset_input(preset):
    """`((H, W), channels)` of a classification preset, read without its weights."""
    model = classifier_class(preset).from_preset(preset, load_weights=False)
    shape = model.backbone.image_shape
    return (shape[0], shape[1]), shape[2]


def run(config, output_dir, verbose=1):
    """Fine-tunes, evaluates and saves; returns a dict of results (crash-safe
    like every recipe: a rerun with the same `output_dir` resumes)."""
    return run_distributed(_run, config, output_dir, verbose)


def _run(config, output_dir, verbose, plan):
    keras.utils.set_random_seed(config["seed"])
    os.makedirs(output_dir, exist_ok=True)
    size, channels = preset_input(config["preset"])
    if config["image_size"] is not None:
        size = (config["image_size"], config["image_size"])
    if size[0] != size[1]:
        raise ValueError(f"The recipe's data is square; the preset takes {size[0]}x{size[1]}: pass --image-size.")
    train, test, num_classes = load_data(config, size[0], channels)
    model = build_model(config, num_classes)
    tuned = tuning.summary(model, print_fn=print if verbose else None)
    backup, metrics = fit_and_evaluate(model, train, test, config, output_dir, verbose, plan, optimizer=make_optimizer)

    results = {
        "preset": os.fspath(config["preset"]),
        "method": tuned["method"],
        "tuning_options": tuned["options"],
        "trainable_parameters": tuned["trainable"],
        "total_parameters": tuned["total"],
        "trainable_fraction": tuned["fraction"],
        "from_scratch": bool(config["from_scratch"]),
        "train_images": int(len(train[0])) if isinstance(train, tuple) else None,
        "test_accuracy": float(metrics["accuracy"]),
        "test_loss": float(metrics["loss"]),
    }
    if config.get("save_delta") and plan.is_chief:
        delta = os.path.join(output_dir, "delta.safetensors")
        tuning.save_delta(model, delta, base=config["preset"])
        results["delta"] = delta
        results["delta_bytes"] = os.path.getsize(delta)
    curve = training_curve_figure(backup.history, ("loss",), ("accuracy",), "training accuracy")
    return finish_run(model, backup, output_dir, "finetune", config, results, curve, plan)


def parse_args(argv=None, **parser_options):
    parser = recipe_parser(__doc__, **parser_options)
    parser.add_argument("preset", help="a classification preset: name, preset folder or checkpoint file")
    add_run_arguments(parser, "digits", "runs/finetune")
    parser.add_argument("--method", default=CONFIG["method"],
                        help="full, linear, partial, bias, adapter, lora or vpt; several joined by +")
    parser.add_argument("--k", type=_positive, default=None, help="partial: the last K blocks train")
    parser.add_argument("--rank", type=_positive, default=None, help="lora: the rank (default 4)")
    parser.add_argument("--alpha", type=float, default=None, help="lora: the scale is alpha / rank (default: rank)")
    parser.add_argument("--prompts", type=_positive, default=None, help="vpt: prompt tokens per block (default 10)")
    parser.add_argument("--deep", action="store_true", help="vpt: VPT-deep (prompts before every block)")
    parser.add_argument("--prompt-dropout", type=float, default=None, help="vpt: dropout on the prompts (default 0)")
    parser.add_argument("--reduction", type=_positive, default=None, help="adapter: bottleneck D / reduction (default 8)")
    parser.add_argument("--head-init", choices=("zeros", "normal"), default=None,
                        help="the new head's initialisation: zeros (the ViT paper; default) or truncated normal 0.02")
    parser.add_argument("--layer-decay", type=float, default=None,
                        help="layer-wise learning-rate decay, e.g. 0.75 (BEiT/MAE fine-tuning)")
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default=None,
                        help="adamw (default) or sgd: the ViT paper's SGD, momentum 0.9, clip 1, cosine with warm-up")
    parser.add_argument("--labels-per-class", type=_positive, default=None,
                        help="digits: keep only this many labelled training images per class")
    parser.add_argument("--from-scratch", action="store_true",
                        help="the preset's architecture with fresh weights: the baseline that transfer should beat")
    parser.add_argument("--save-delta", action="store_true",
                        help="also write delta.safetensors: the tuned weights alone, loadable on the base preset")
    add_config_arguments(
        parser, int_keys=("image_size", "epochs", "batch_size", "seed"),
        float_keys=("learning_rate", "weight_decay", "dropout_rate", "drop_path_rate"),
        defaults=CONFIG,
    )
    args = parser.parse_args(argv)
    config = config_from_args(args, CONFIG, SMOKE)
    chosen = args.method.split("+")
    unknown = [m for m in chosen if m not in tuning.METHODS]
    if unknown:
        parser.error(f"--method: unknown {unknown}; choose from {', '.join(tuning.METHODS)} (join several with +)")
    if "partial" in chosen and args.k is None:
        parser.error("--method partial needs --k, the number of last blocks to train")
    if args.layer_decay is not None and not 0 < args.layer_decay <= 1:
        parser.error(f"--layer-decay must be in (0, 1], not {args.layer_decay}")
    if args.prompt_dropout is not None and not 0 <= args.prompt_dropout < 1:
        parser.error(f"--prompt-dropout must be in [0, 1), not {args.prompt_dropout}")
    if args.alpha is not None and not args.alpha > 0:
        parser.error(f"--alpha must be positive, not {args.alpha}")
    try:
        digit_classes(args.dataset)
    except ValueError as error:
        parser.error(str(error))
    options = {
        "k": args.k, "rank": args.rank, "alpha": args.alpha, "prompts": args.prompts, "prompt_dropout": args.prompt_dropout,
        "reduction": args.reduction, "head_init": args.head_init, "layer_decay": args.layer_decay,
        "optimizer": args.optimizer, "labels_per_class": args.labels_per_class,
    }
    config.update({k: v for k, v in options.items() if v is not None})
    config["deep"] = bool(args.deep)
    config["save_delta"] = bool(args.save_delta)
    config["from_scratch"] = bool(args.from_scratch)
    config["preset"] = args.preset
    return config, args.output


def _positive(text):
    from recipes.common import _positive_int

    return _positive_int(text)


def main(argv=None, **parser_options):
    return recipe_main(parse_args, run, argv, **parser_options)


if __name__ == "__main__":
    main()
