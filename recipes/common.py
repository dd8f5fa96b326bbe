"""What the recipes share: command-line handling (a config dict, typed
overrides, --smoke), crash-safe training with periodic evaluation, and the
end of a run (preset, figures, results.json)."""

import argparse
import contextlib
import math
import os

import keras

from keras_vit.callbacks import CrashSafeBackup
from keras_vit.data import EpochBatches


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text):
    """A random seed: an integer in [0, 2**32) (numpy's and Keras' range)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**32), got {text!r}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite, non-negative number, got {text!r}")
    return value


def add_config_arguments(parser, int_keys=(), float_keys=(), defaults=None):
    """`--some-key` options for config keys (None when not given: the
    recipe's `defaults`, shown in the help) and `--mixed-precision`."""
    defaults = defaults or {}

    def shown(key):
        value = defaults.get(key)
        return None if value is None else f"default: {value}"

    for key in int_keys:
        # argparse turns a bad value into a one-line message and exit code 2.
        kind = _seed if key == "seed" else _positive_int
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, help=shown(key))
    for key in float_keys:
        parser.add_argument(f"--{key.replace('_', '-')}", type=_finite_float, default=None, help=shown(key))
    parser.add_argument(
        "--mixed-precision", nargs="?", const="mixed_bfloat16", choices=("mixed_bfloat16", "mixed_float16"),
        default=None, help="mixed precision policy: mixed_bfloat16 (the default when given alone) or mixed_float16 "
        "(with dynamic loss scaling)",
    )


def config_from_args(args, defaults, smoke):
    """`defaults`, then `smoke` if `--smoke`, then every option the user gave."""
    config = dict(defaults)
    if args.smoke:
        config.update(smoke)
    for key in defaults:
        value = getattr(args, key, None)
        if value is not None and value is not False:
            config[key] = value
    for key in ("distribute", "model_parallel"):  # every recipe's (add_run_arguments)
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    if getattr(args, "overwrite", False):
        config["overwrite"] = True  # taken out by run_distributed: not a setting of the run
    return config


def start_distribution(config, layout_map=None):
    """The run's `keras_vit.distribution.DistributionPlan` from `--distribute`
    and `--model-parallel` (before any model is built; `layout_map`: the
    task's for `--distribute model`, ViT's by default); checks that the
    global batch splits over the replicas."""
    from keras_vit import distribution

    plan = distribution.configure(config.get("distribute", "none"), config.get("model_parallel"), layout_map)
    plan.per_replica_batch(config["batch_size"])
    if plan.mode != "none" and plan.is_chief:
        print(f"distribution: {plan.describe()}", flush=True)
    return plan


def run_distributed(run_on_plan, config, output_dir, verbose, layout_map=None):
    """Calls `run_on_plan(config, output_dir, verbose, plan)` inside the
    plan's scope, holding the run folder (`claim_output`) in the chief."""
    config = dict(config)
    overwrite = bool(config.pop("overwrite", False))
    plan = start_distribution(config, layout_map)
    _WRITES_FILES[0] = plan.is_chief
    try:
        with claim_output(output_dir, config, overwrite, plan.is_chief):
            with plan.scope():
                return run_on_plan(config, output_dir, verbose if plan.is_chief else 0, plan)
    finally:
        _WRITES_FILES[0] = True


RUN_FILE = "run.json"


class RunFolderError(ValueError):
    """`--output` cannot be used as given (in use, other settings, a finished
    run): a user error, shown by `keras-vit` as one line with exit code 2."""


def _differences(recorded, config):
    keys = sorted(set(recorded) | set(config))
    return [f"{key} {recorded.get(key)!r} -> {config.get(key)!r}" for key in keys if recorded.get(key) != config.get(key)]


@contextlib.contextmanager
def claim_output(output_dir, config, overwrite=False, chief=True):
    """Holds `output_dir` for one run: an exclusive lock for the whole run
    (a second run with the same folder is refused, naming the process that
    holds it), and `run.json` recording the run's settings. A rerun with the
    same settings resumes (the backup) or, once finished, is refused rather
    than overwriting the finished run; a rerun with other settings is
    refused naming the differences. `overwrite` starts over: the backup,
    results and preset of the earlier run are removed first. Processes
    other than the chief of a distributed run only read."""
    import json
    import shutil

    from keras_vit.utils.files import write_json_atomically

    if not chief:
        yield
        return
    os.makedirs(output_dir, exist_ok=True)
    lock_path = os.path.join(output_dir, ".run.lock")
    handle = open(lock_path, "a+")
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no run lock (the files are still written atomically)
            pass
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderError(
                f"{output_dir} is in use by a running recipe ({holder}); wait for it to finish or choose another "
                "--output."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        run_file = os.path.join(output_dir, RUN_FILE)
        settings = json.loads(json.dumps(config, default=str))
        if os.path.isfile(run_file) and not overwrite:
            try:
                with open(run_file, encoding="utf-8") as f:
                    recorded = json.load(f).get("settings", {})
            except (ValueError, OSError, AttributeError):
                recorded = None
            if recorded is None:
                raise RunFolderError(f"{run_file} is unreadable: pass --overwrite to start over, or choose another --output.")
            changed = _differences(recorded, settings)
            if changed:
                raise RunFolderError(
                    f"{output_dir} holds a run with other settings ({'; '.join(changed)}): rerun with its options "
                    "to resume it, pass --overwrite to start over, or choose another --output."
                )
            if os.path.isfile(os.path.join(output_dir, "results.json")) and not os.path.isdir(
                os.path.join(output_dir, "backup")
            ):
                raise RunFolderError(
                    f"{output_dir} holds a finished run of these settings (results.json); running again would "
                    "overwrite it: pass --overwrite, or choose another --output."
                )
        elif overwrite or (os.path.isfile(os.path.join(output_dir, "results.json")) and not os.path.isfile(run_file)):
            if not overwrite:
                raise RunFolderError(
                    f"{output_dir} holds a finished run (results.json) with no record of its settings; running "
                    "again would overwrite it: pass --overwrite, or choose another --output."
                )
            for name in ("backup", "preset"):
                shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
            for name in ("results.json", RUN_FILE):
                if os.path.isfile(os.path.join(output_dir, name)):
                    os.remove(os.path.join(output_dir, name))
        write_json_atomically(run_file, {"settings": settings})
        yield
        os.remove(lock_path)  # the run is over (a run waiting on it is refused, not blocked)
    finally:
        handle.close()


# False in the processes of a distributed run other than the chief (set by
# run_distributed): they draw nothing to disk.
_WRITES_FILES = [True]


def dtype_policy(config):
    """The model's dtype policy from `config["mixed_precision"]`: None
    (float32), or "mixed_bfloat16" / "mixed_float16" (True, from configs of
    earlier runs, means mixed_bfloat16)."""
    value = config.get("mixed_precision")
    if not value:
        return None
    return "mixed_bfloat16" if value is True else value


def save_figure(figure, path, dpi=110):
    """Writes a matplotlib figure as a PNG atomically (a unique temporary file,
    then a rename); in a distributed run's non-chief processes, closes it unwritten."""
    import matplotlib.pyplot as plt

    from keras_vit.visualization.figures import save_figure as write_figure

    if not _WRITES_FILES[0]:
        plt.close(figure)
        return path
    return write_figure(figure, path, dpi=dpi)


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


def add_run_arguments(parser, dataset, output, preset=None):
    """The options every recipe has: `--dataset` (default `dataset`), `--output`
    (default `output`), `--smoke`, `--data-dir`, `--offline`, and `--preset`
    when `preset` (its help text) is given."""
    parser.add_argument("--dataset", default=dataset, help=f"'{dataset}' (embedded), 'tfds:NAME' or 'folder:PATH' (a local folder in the task's layout)")
    parser.add_argument(
        "--output", default=output,
        help="output directory (a rerun with the same one and the same options resumes; other options are refused)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start over in --output even if it holds a finished run or a run with other options",
    )
    if preset is not None:
        parser.add_argument("--preset", default=None, help=preset)
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    parser.add_argument(
        "--data-dir", default=None, help="tensorflow-datasets data_dir (default: TFDS_DATA_DIR or ~/tensorflow_datasets)"
    )
    parser.add_argument("--offline", action="store_true", help="never download: read tfds data already on disk")
    parser.add_argument(
        "--distribute", choices=("auto", "none", "data", "model"), default="auto",
        help="devices: data parallel over every device (torch: the processes torchrun started), model parallel "
        "(JAX, ViT encoders), none, or auto (data when there are several); --batch-size is the global batch",
    )
    parser.add_argument(
        "--model-parallel", type=_positive_int, default=None, help="model axis size for --distribute model (default 2)"
    )


def finish_run(model, backup, output_dir, recipe, config, results, curve, plan=None, class_names=None):
    """The end of a crash-safe recipe run: saves the preset, completes
    `results` with the run's facts (backend, the whole run's training seconds
    and epochs also after a resume, parameters, history), writes the
    training curve (`curve`, a figure) and results.json, atomically, and only
    then deletes the backup; `class_names` go into the preset's metadata
    (`keras-vit predict` labels with them). Returns the results."""
    from keras_vit.utils.files import write_json_atomically

    if plan is not None:
        results = {**results, "distribution": plan.describe()}
        if not plan.is_chief:  # one process writes: the chief
            import matplotlib.pyplot as plt

            plt.close(curve)
            return results
    metadata = {"recipe": recipe, "config": config}
    if class_names is not None:  # read by keras-vit predict
        metadata["class_names"] = [str(name) for name in class_names]
    model.save_to_preset(os.path.join(output_dir, "preset"), metadata=metadata)
    results = {
        "dataset": config["dataset"],
        "backend": keras.backend.backend(),
        "train_seconds": round(sum(row["seconds"] for row in backup.history), 1),
        "epochs": len(backup.history),
        "resumed_after_epoch": backup.initial_epoch or None,
        "parameters": int(model.count_params()),
        **results,
        "history": backup.history,
        "output_dir": output_dir,
    }
    results["curve_png"] = save_figure(curve, os.path.join(output_dir, "training_curve.png"))
    write_json_atomically(os.path.join(output_dir, "results.json"), results)
    backup.finish()  # every output is in place: the backup has done its job
    return results


def recipe_parser(doc, prog=None, epilog=None):
    """A recipe's `argparse` parser: its docstring's first paragraph as the
    description; `prog` and `epilog` (examples) as `keras-vit` gives them."""
    from keras_vit.cli import command_parser

    return command_parser(prog, doc.split("\n\n")[0], epilog)


def recipe_main(parse_args, run, argv=None, hidden=("history", "evaluations", "loss"), **parser_options):
    """Parses the arguments (`parser_options`: `prog`, `epilog` for
    `recipe_parser`), runs, prints the results (without the long lists)."""
    import json

    config, output = parse_args(argv, **parser_options)
    results = run(config, output)
    print(json.dumps({k: v for k, v in results.items() if k not in hidden}, indent=2))
    return results


class PeriodicEvaluation(keras.callbacks.Callback):
    """Every `every` epochs (and, with `at_end`, after the last),
    `evaluate(model)` -> dict of numbers, printed with `describe(row)` and
    kept with the epoch's training loss. The history is part of
    `CrashSafeBackup`'s state, so a resumed run keeps it."""

    def __init__(self, evaluate, every, describe, at_end=True):
        super().__init__()
        self.evaluate, self.every, self.describe, self.at_end = evaluate, int(every), describe, bool(at_end)
        self.history = []

    def get_state(self):
        return {"history": self.history}

    def set_state(self, state):
        self.history = list(state["history"])

    def on_epoch_end(self, epoch, logs=None):
        last = self.at_end and (epoch + 1) == self.params.get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        row = {"epoch": epoch + 1, "loss": float(logs["loss"]), **self.evaluate(self.model)}
        self.history.append(row)
        print(f"epoch {epoch + 1}: loss {row['loss']:.4f}, {self.describe(row)}", flush=True)


def fit_crash_safe(model, train, config, output_dir, evaluation=None, verbose=2, plan=None, **fit_kwargs):
    """`model.fit` under `CrashSafeBackup` (in `output_dir/backup`): numpy
    pairs go through `EpochBatches` (order by (seed, epoch)), tf.data sets as
    they are. `evaluation` (a `PeriodicEvaluation` or any callback with
    `get_state`/`set_state`) is kept with each checkpoint. Under a
    distribution `plan`, only whole global batches train (each torch process
    loads its part of each), only the chief writes checkpoints, and every
    process restores them. Returns the backup (its `history`,
    `initial_epoch`, `finish()`)."""
    if plan is None:
        from keras_vit import distribution

        plan = distribution.DistributionPlan("none")
    state = {"evaluation": evaluation} if evaluation is not None else None
    backup = CrashSafeBackup(os.path.join(output_dir, "backup"), state=state, verbose=verbose, write=plan.is_chief)
    # The evaluation first: its row of an epoch is in that epoch's checkpoint;
    # the replicas' sync (torch) after the restore.
    callbacks = ([evaluation] if evaluation is not None else []) + [backup] + plan.fit_callbacks()
    if isinstance(train, tuple):
        batches = EpochBatches(
            train[0], train[1], config["batch_size"], seed=config["seed"],
            drop_remainder=plan.mode != "none", shard=plan.process_shard(),
        )
        model.fit(
            batches, epochs=config["epochs"], shuffle=False,  # EpochBatches shuffles, by (seed, epoch)
            callbacks=callbacks + [batches.epoch_callback()], verbose=verbose, **fit_kwargs,
        )
    else:
        train = plan.distribute_dataset(train, config["batch_size"])
        model.fit(train, epochs=config["epochs"], callbacks=callbacks, verbose=verbose, **fit_kwargs)
    return backup


def small_backbone(config, dtype=None, layer_norm_epsilon=1e-6, channels=3):
    """The recipes' from-scratch ViT encoder (sizes from the config)."""
    import keras_vit

    return keras_vit.ViTBackbone(
        image_shape=(config["image_size"], config["image_size"], channels),
        patch_size=config["patch_size"],
        hidden_dim=config["hidden_dim"],
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        mlp_dim=config["mlp_dim"],
        dropout_rate=config.get("dropout_rate", 0.0),
        drop_path_rate=config["drop_path_rate"],
        layer_norm_epsilon=layer_norm_epsilon,
        dtype=dtype,
    )
