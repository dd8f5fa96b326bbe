"""Command-line handling shared by the recipes: a config dict, typed overrides and --smoke."""


def add_config_arguments(parser, int_keys=(), float_keys=()):
    """`--some-key` options for config keys (None when not given) and `--mixed-precision`."""
    for key in int_keys:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    for key in float_keys:
        parser.add_argument(f"--{key.replace('_', '-')}", type=float, default=None)
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
