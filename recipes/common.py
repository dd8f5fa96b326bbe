"""Command-line handling shared by the recipes: a config dict, typed overrides and --smoke."""

import argparse
import math
import os


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite, non-negative number, got {text!r}")
    return value


def add_config_arguments(parser, int_keys=(), float_keys=()):
    """`--some-key` options for config keys (None when not given) and `--mixed-precision`."""
    for key in int_keys:
        # argparse turns a bad value into a one-line message and exit code 2.
        kind = int if key == "seed" else _positive_int
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None)
    for key in float_keys:
        parser.add_argument(f"--{key.replace('_', '-')}", type=_finite_float, default=None)
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_bfloat16 policy")


def config_from_args(args, defaults, smoke):
    """`defaults`, then `smoke` if `--smoke`, then every option the user gave."""
    config = dict(defaults)
    if args.smoke:
        config.update(smoke)
    for key in defaults:
        value = getattr(args, key, None)
        if value is not None and value is not False:
            config[key] = value
    return config


def save_figure(figure, path, dpi=110):
    """Writes a matplotlib figure as a PNG atomically (a unique temporary file, then a rename)."""
    import matplotlib.pyplot as plt

    from keras_vit.utils.files import atomic_file
    from keras_vit.utils.files import commit_file

    staging = atomic_file(path)
    try:
        figure.savefig(staging, format="png", dpi=dpi)
        commit_file(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
    finally:
        plt.close(figure)
    return path


def training_curve_figure(history, left_keys=("loss",), right_keys=(), right_label=None, right_points=None):
    """A figure of per-epoch values of the whole run (`CrashSafeBackup.history`
    rows): `left_keys` on the left axis, `right_keys` (or `right_points`, a
    list of rows with their own "epoch") on a right axis in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, left = plt.subplots(figsize=(6, 3.5))
    epochs = [row["epoch"] for row in history]
    colors = iter(("tab:blue", "tab:red", "tab:purple"))
    for key in left_keys:
        left.plot(epochs, [row.get(key) for row in history], color=next(colors), label=key)
    left.set_xlabel("epoch")
    left.set_ylabel(", ".join(left_keys))
    left.legend(loc="upper left")
    rows = right_points if right_points is not None else history
    if right_keys and rows:
        right = left.twinx()
        for key, color, marker in zip(right_keys, ("tab:orange", "tab:green", "tab:gray"), "os^"):
            right.plot([row["epoch"] for row in rows], [row.get(key) for row in rows], f"{marker}-", color=color, label=key)
        right.set_ylabel(right_label or ", ".join(right_keys))
        right.set_ylim(0, 1)
        right.legend(loc="center right")
    figure.tight_layout()
    return figure
