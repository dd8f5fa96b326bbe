"""Command-line handling shared by the recipes: a config dict, typed overrides and --smoke."""

import argparse
import math


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
