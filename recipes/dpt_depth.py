"""Train and evaluate DPT for monocular (metric) depth.

The default (`--dataset scenes`) trains a small DPT from scratch on the
embedded procedural rooms of `keras_vit.data.scenes` (textured floor and
wall, boxes and spheres seen by a pinhole camera, exact depth in metres; no
download) and evaluates it on held-out scenes with the standard depth
metrics (AbsRel, SqRel, RMSE, RMSElog, log10, delta < 1.25^k), beside the
trivial baseline of predicting the training set's mean depth everywhere.
NYU Depth v2 comes through tensorflow-datasets with
`--dataset tfds:nyu_depth_v2`, optionally starting from a pretrained preset
(`--preset dpt_hybrid_nyu`), and image/depth pairs on disk with
`--dataset folder:PATH` (`PATH/train/images/<name>.png|jpg` with
`PATH/train/depth/<name>.png`, 16-bit PNGs of metres x `--depth-png-scale`,
and the same under `PATH/test`). The model predicts metric depth
(`1 / (scale * x + shift)` on the DPT head's output, as DPT's NYU and KITTI
releases do) and trains with the scale-invariant log loss. The run saves a
preset directory, results.json, a training-curve PNG and a PNG of colourised
predicted and true depth; killed at any moment, a rerun resumes after the
last finished epoch.

    python -m recipes.dpt_depth                 # scenes, about 8 minutes on 2 cores
    python -m recipes.dpt_depth --smoke         # a few steps, for CI
    python -m recipes.dpt_depth --dataset tfds:nyu_depth_v2 --preset dpt_hybrid_nyu --image-size 384 --epochs 1
    python -m recipes.dpt_depth --dataset folder:~/my_depth --depth-png-scale 256   # KITTI-style PNGs
"""

import os

import keras
import numpy as np

import keras_vit
from keras_vit.losses import ScaleInvariantLogLoss
from keras_vit.metrics.dense import DEPTH_METRICS
from keras_vit.metrics.dense import DepthMetrics
from keras_vit.visualization import plot_depth
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

CONFIG = {
    "dataset": "scenes",
    "image_size": 64,
    "num_train": 3000,
    "num_test": 300,
    "max_objects": 3,
    "preset": None,
    "patch_size": 16,
    "hidden_dim": 96,
    "num_layers": 4,
    "num_heads": 3,
    "mlp_dim": 192,
    "fusion_width": 48,
    "drop_path_rate": 0.0,
    # Metric depth = 1 / (depth_scale * x + depth_shift) on the head's output
    # (from scratch; a preset keeps its own).
    "depth_scale": 1.0,
    "depth_shift": 0.05,
    "epochs": 15,
    "batch_size": 16,
    "learning_rate": 5e-4,
    "weight_decay": 1e-4,
    "min_depth": 1e-3,
    "max_depth": 12.0,
    # folder:PATH depth PNGs hold metres x this (1000: millimetres, NYU's and DIODE's exports; KITTI: 256).
    "depth_png_scale": 1000.0,
    "eval_every": 5,
    "seed": 0,
    "mixed_precision": False,
    "data_dir": None,
    "offline": False,
}

SMOKE = {"epochs": 1, "num_train": 32, "num_test": 8, "eval_every": 1}

# NYU Depth v2's evaluation caps (Eigen et al.'s protocol).
NYU = {"min_depth": 1e-3, "max_depth": 10.0}


def load_data(config):
    """`(train, test)`: numpy `(images, depth)` pairs (scenes) or batched tf.data sets."""
    dense_common.check_dataset(config["dataset"], "scenes")
    if config["dataset"] == "scenes":
        (images, depth, _), (test_images, test_depth, _) = dense_common.scenes(config)
        return (images, depth), (test_images, test_depth)
    if config["dataset"].startswith("folder:"):
        from recipes import folder_data

        return dense_common.folder_depth(folder_data.parse(config["dataset"]), config)
    return dense_common.tfds_depth(config["dataset"][len("tfds:"):], config)


def build_model(config, initial_depth=None):
    """A preset, or a new small DPT whose head starts out predicting
    `initial_depth` everywhere (its last convolution zero, its bias set so).
    With random weights there instead, the final ReLU is off on many pixels
    from the start and, seen in a run here, on all of them after an epoch,
    after which nothing trains."""
    dtype = dtype_policy(config)
    if config["preset"]:
        return keras_vit.DPTDepthEstimator.from_preset(config["preset"], image_size=config["image_size"], dtype=dtype)
    model = keras_vit.DPTDepthEstimator(
        small_backbone(config, dtype),
        **dense_common.dpt_neck(config),
        depth_scale=config["depth_scale"],
        depth_shift=config["depth_shift"],
        preprocessor=dense_common.preprocessor(config),
        dtype=dtype,
    )
    if initial_depth is not None:
        inverse = (1.0 / initial_depth - config["depth_shift"]) / config["depth_scale"]
        if inverse <= 0:
            raise ValueError(
                f"depth_shift={config['depth_shift']} caps depth below the training mean {initial_depth:.3f}: "
                "lower depth_shift."
            )
        head = model.get_layer("depth_head").conv3
        head.kernel.assign(np.zeros(head.kernel.shape, "float32"))
        head.bias.assign(np.full((1,), inverse, "float32"))
    return model


def predict(model, images, batch_size):
    return np.asarray(keras.ops.convert_to_numpy(model.predict(images, batch_size=batch_size, verbose=0)), "float32")


def training_mean_depth(train, batch_size, limit=200):
    """The mean of the valid training depths (over the first `limit` batches
    of a tf.data set): the trivial baseline's prediction."""
    total, count = 0.0, 0
    for index, (_, depth) in enumerate(dense_common.batches_of(train, batch_size)):
        valid = np.isfinite(depth) & (depth > 0)
        total, count = total + float(depth[valid].sum(dtype="float64")), count + int(valid.sum())
        if index + 1 >= limit:
            break
    return total / max(count, 1)


def evaluate(model, test, config, constant=None, verbose=False):
    """Depth metrics over the test set (per image, then averaged) of the model,
    or of predicting `constant` everywhere; `verbose`: a progress bar."""
    metric = DepthMetrics(config["min_depth"], config["max_depth"])
    for images, depth in dense_common.batches_of(test, config["batch_size"] * 4, verbose):
        prediction = np.full(depth.shape, constant, "float32") if constant is not None else predict(
            model, images, config["batch_size"] * 4
        )
        metric.update_state(depth, prediction)
    if metric.evaluated_images == 0:
        raise ValueError(
            f"No test image has a depth inside [min_depth, max_depth] = [{config['min_depth']}, {config['max_depth']}]: "
            "nothing can be measured. Check the depth scale (--depth-png-scale for PNG folders) or set "
            "--min-depth/--max-depth to the data's range."
        )
    return {k: float(v) for k, v in metric.result().items()}


def run(config, output_dir, verbose=2):
    """Trains, evaluates and saves; returns a dict of results. Crash-safe as
    the other recipes: a rerun with the same `output_dir` resumes after the
    last finished epoch, on the scenes with exactly the weights of an
    uninterrupted run."""
    if config["dataset"].startswith("tfds:nyu_depth_v2"):
        config = {**config, **{k: v for k, v in NYU.items() if config.get(k) == CONFIG[k]}}
    return run_distributed(_run, config, output_dir, verbose)


def _run(config, output_dir, verbose, plan):
    keras.utils.set_random_seed(config["seed"])
    os.makedirs(output_dir, exist_ok=True)
    train, test = load_data(config)
    mean_depth = training_mean_depth(train, config["batch_size"])
    model = build_model(config, mean_depth)
    model.compile(
        optimizer=dense_common.optimizer(config, dense_common.steps_per_epoch(train, config["batch_size"])),
        loss=ScaleInvariantLogLoss(),
        metrics=[],
    )
    evaluation = PeriodicEvaluation(
        lambda m: evaluate(m, test, config), config["eval_every"],
        lambda row: f"held-out AbsRel {row['abs_rel']:.3f}, RMSE {row['rmse']:.3f}, delta1 {row['delta1']:.3f}",
    )
    backup = fit_crash_safe(model, train, config, output_dir, evaluation, verbose, plan=plan)
    metrics = evaluation.history[-1] if evaluation.history else evaluate(model, test, config)
    metrics = {k: metrics[k] for k in DEPTH_METRICS}
    baseline = evaluate(model, test, config, constant=mean_depth)

    images, depth = dense_common.first_examples(test, 6)
    results = {
        "depth_metrics": metrics,
        "baseline": {"predict": f"the training mean depth, {mean_depth:.3f} m", **baseline},
        "abs_rel_vs_baseline": baseline["abs_rel"] / max(metrics["abs_rel"], 1e-12),
        "evaluations": evaluation.history,
        "depth_png": save_figure(
            plot_depth(images, predict(model, images, 6), depth, max_depth=config["max_depth"]),
            os.path.join(output_dir, "depth.png"),
        ),
    }
    curve = training_curve_figure(
        backup.history, ("loss",), ("delta1", "abs_rel"), "held-out delta1, AbsRel", evaluation.history
    )
    return finish_run(model, backup, output_dir, "dpt_depth", config, results, curve, plan)


def parse_args(argv=None, **parser_options):
    parser = recipe_parser(__doc__, **parser_options)
    add_run_arguments(parser, "scenes", "runs/dpt_depth", preset="start from a DPT depth preset (e.g. dpt_hybrid_nyu)")
    add_config_arguments(
        parser,
        int_keys=dense_common.INT_KEYS,
        float_keys=("learning_rate", "weight_decay", "drop_path_rate", "depth_scale", "depth_shift",
                    "min_depth", "max_depth", "depth_png_scale"),
        defaults=CONFIG,
    )
    args = parser.parse_args(argv)
    return config_from_args(args, CONFIG, SMOKE), args.output


def main(argv=None, **parser_options):
    return recipe_main(parse_args, run, argv, **parser_options)


if __name__ == "__main__":
    main()
