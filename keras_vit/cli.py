"""The `keras-vit` command.

Usage: keras-vit [--backend {jax,tensorflow,torch}] COMMAND [options]

The command-line parsing imports nothing heavy: `keras-vit`, `--help` and
usage errors answer at once, and `--backend` sets `KERAS_BACKEND` before
Keras is imported (the package's public names load on first use in this
process; see `keras_vit/__init__.py`).
"""

import difflib
import importlib
import importlib.util
import os
import sys

PROG = "keras-vit"
BACKENDS = ("jax", "tensorflow", "torch")

# command: (recipe module or None, one line of help, examples)
COMMANDS = {
    "train": (
        "recipes.vit_classification",
        "train and evaluate a ViT classifier (bundled digits, tfds:NAME or folder:PATH)",
        ["keras-vit train", "keras-vit train --epochs 5 --output runs/digits",
         "keras-vit train --dataset folder:~/flowers --image-size 224 --patch-size 16"],
    ),
    "finetune": (
        "recipes.finetune",
        "fine-tune a classification preset (full, linear, partial, bias, adapter, lora, vpt; layer decay)",
        ["keras-vit finetune runs/vit_classification/preset --method linear",
         "keras-vit finetune vit_b16 --dataset folder:~/flowers --method vpt --prompts 50 --deep",
         "keras-vit finetune vit_s16 --dataset tfds:cifar10 --method lora+bias --rank 8 --save-delta"],
    ),
    "detect": (
        "recipes.detr_detection",
        "train and evaluate DETR (generated shapes, tfds:coco/2017 or a COCO folder)",
        ["keras-vit detect --smoke", "keras-vit detect --dataset folder:~/coco --preset detr_r50 --image-size 800"],
    ),
    "depth": (
        "recipes.dpt_depth",
        "train and evaluate DPT depth (generated scenes, tfds:nyu_depth_v2 or image/depth folders)",
        ["keras-vit depth", "keras-vit depth --dataset tfds:nyu_depth_v2 --preset dpt_hybrid_nyu --image-size 384"],
    ),
    "segment": (
        "recipes.segmentation",
        "train and evaluate DPT or Segmenter segmentation (scenes, tfds:scene_parse150 or image/mask folders)",
        ["keras-vit segment --model segmenter", "keras-vit segment --dataset folder:~/masks --image-size 256"],
    ),
    "predict": (
        None,
        "run a preset on images or a folder: predictions.json and a picture per image",
        ["keras-vit predict runs/vit_classification/preset digit.png", "keras-vit predict vit_b16 photos/ --output predictions",
         "keras-vit predict runs/detr_detection/preset street.jpg --threshold 0.7 --class-names names.txt"],
    ),
    "evaluate": (
        None,
        "evaluate a preset on a recipe's test set with that recipe's metrics (a recipe's preset: its own test set)",
        ["keras-vit evaluate runs/vit_classification/preset",
         "keras-vit evaluate runs/dpt_depth/preset --output metrics.json",
         "keras-vit evaluate vit_b16 --dataset folder:~/imagenet_val"],
    ),
    "convert": (
        None,
        "convert a checkpoint (or fetch a preset) into a preset folder",
        ["keras-vit convert vit_b16 ./vit_b16", "keras-vit convert ./ViT-B_16.npz ./vit_b16 --num-classes 10",
         "keras-vit convert hf://google/vit-base-patch16-224 ./vit_hf"],
    ),
    "export": (
        None,
        "export a preset (a name or a folder) to ONNX or a TensorFlow SavedModel, checked against Keras",
        ["keras-vit export vit_b16 vit_b16.onnx --format onnx",
         "keras-vit --backend jax export runs/vit_classification/preset digits_saved_model",
         "keras-vit export runs/detr_detection/preset detr.onnx --format onnx --image-size 800 1088 --batch-size 1"],
    ),
    "benchmark": (
        None,
        "time a preset's inference and training steps on random inputs (images/s, memory) on this backend",
        ["keras-vit benchmark vit_b16", "keras-vit --backend jax benchmark vit_s16 --batch-size 32 --no-train",
         "keras-vit benchmark detr_r50 --image-size 800 1088 --batch-size 2 --output detr_speed.json"],
    ),
    "presets": (
        None,
        "list the presets: family, parameters, input size, weights' source, published score (--long: description)",
        ["keras-vit presets", "keras-vit presets --family vit", "keras-vit presets --long"],
    ),
}


def help_text():
    width = max(len(c) for c in COMMANDS)
    lines = [
        f"usage: {PROG} [--backend {{{','.join(BACKENDS)}}}] COMMAND [options]",
        "",
        "Vision transformers for Keras 3: training recipes, checkpoint conversion, export and the preset list.",
        "",
        "commands:",
        *[f"  {name:<{width}}  {summary}" for name, (_, summary, _) in COMMANDS.items()],
        "",
        "options:",
        "  --backend NAME  the Keras backend for this run (sets KERAS_BACKEND; default: KERAS_BACKEND or Keras' own)",
        "  -h, --help      this help; `keras-vit COMMAND --help` for a command's options",
        "  --version       the version",
        "",
        "examples:",
        *[f"  {COMMANDS[name][2][0]}" for name in COMMANDS],
        f"  {PROG} --backend jax train --epochs 5",
    ]
    return "\n".join(lines)


def _examples(command):
    return "examples:\n" + "\n".join(f"  {line}" for line in COMMANDS[command][2])


def usage_error(message):
    """One line on stderr (and where to look), exit code 2: argparse's convention."""
    print(f"{PROG}: error: {message}\nRun '{PROG} --help' for the commands.", file=sys.stderr)
    return 2


def _pop_backend(argv):
    """`(backend or None, argv without --backend)`; ValueError for a missing or unknown name."""
    backend, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--backend" or arg.startswith("--backend="):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            else:
                raise ValueError(f"--backend needs a value, one of {', '.join(BACKENDS)}")
            if value not in BACKENDS:
                raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, not {value!r}")
            backend = value
        elif arg == "--":
            rest.extend(argv[i:])
            break
        else:
            rest.append(arg)
        i += 1
    return backend, rest


def select_backend(backend):
    """Sets KERAS_BACKEND (before Keras is imported) and checks that the
    backend's package is installed; returns an error message or None."""
    if backend is not None:
        keras = sys.modules.get("keras")
        if keras is not None and keras.backend.backend() != backend:
            return (f"--backend {backend}: Keras is already imported with the {keras.backend.backend()} backend "
                    f"in this process; run {PROG} as a command, or set KERAS_BACKEND={backend} before Python starts")
        os.environ["KERAS_BACKEND"] = backend
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen in BACKENDS and sys.modules.get("keras") is None and importlib.util.find_spec(chosen) is None:
        return (f"the {chosen} backend is selected but {chosen} is not installed: "
                f"pip install -e \".[{chosen}]\" (or choose another with --backend)")
    if chosen is None and sys.modules.get("keras") is None:
        default = _keras_default_backend()
        if default in BACKENDS and importlib.util.find_spec(default) is None:
            installed = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]
            choice = f"--backend {installed[0]}" if installed else "--backend NAME after installing one"
            return (f"Keras' default backend is {default}, which is not installed: pip install -e \".[{default}]\", "
                    f"or run with {choice} (installed: {', '.join(installed) or 'none'})")
    return None


def _keras_default_backend():
    """The backend Keras picks without KERAS_BACKEND: keras.json's (in
    KERAS_HOME or ~/.keras), else TensorFlow; read without importing Keras."""
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        backend, argv = _pop_backend(argv)
    except ValueError as error:
        return usage_error(str(error))
    if not argv:
        print(help_text(), file=sys.stderr)
        return usage_error("a command is required")
    command, argv = argv[0], argv[1:]
    if command in ("-h", "--help", "help"):
        print(help_text())
        return 0
    if command == "--version":
        from keras_vit.version import __version__

        print(f"{PROG} {__version__}")
        return 0
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        kind = "option" if command.startswith("-") else "command"
        return usage_error(f"unknown {kind} '{command}'{hint}; commands: {', '.join(COMMANDS)}")
    # TensorFlow's C++ information lines (CPU features) on every start; warnings stay.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    problem = select_backend(backend)
    if problem:
        return usage_error(problem)
    module = COMMANDS[command][0]
    options = {"prog": f"{PROG} {command}", "epilog": _examples(command)}
    try:
        if module is not None:
            return _run_recipe(command, module, argv, options)
        commands = {
            "convert": convert, "evaluate": evaluate, "export": export, "predict": predict, "benchmark": benchmark,
            "presets": presets,
        }
        return commands[command](argv, **options)
    except SystemExit as exit_:  # argparse: a one-line message is printed, exit code 2
        return exit_.code if isinstance(exit_.code, int) else 1


def _run_recipe(command, module, argv, options):
    from recipes import tfds_data
    from recipes.common import RunFolderError

    recipe = importlib.import_module(module).main
    try:
        recipe(argv, **options)
    except (tfds_data.OfflineError, tfds_data.MissingTFDS) as error:
        # Said plainly, without a traceback: what is missing and what to do.
        print(f"{PROG} {command}: {error}", file=sys.stderr)
        return 1
    except RunFolderError as error:  # --output in use, of other settings, or finished: argparse's style
        print(f"{PROG} {command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def command_parser(prog, description, epilog=None):
    """The `argparse` parser of a `keras-vit` command (the recipes' too):
    `epilog` (its examples) printed as written, each option's default shown."""
    import argparse

    class HelpFormatter(argparse.RawDescriptionHelpFormatter):
        def _get_help_string(self, action):
            text = action.help or ""
            if "%(default)" in text or not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                return text
            return f"{text} (default: %(default)s)" if text else "default: %(default)s"

    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)


def presets(argv, prog=f"{PROG} presets", epilog=None):
    """Prints the preset table: name, family, parameters, input size, weights' source, published score
    (keras_vit.presets.published) and, with --long, the description."""
    parser = command_parser(prog, COMMANDS["presets"][1], epilog)
    parser.add_argument("--family", default=None, help="only this family, or the families it is a prefix of (dpt)")
    parser.add_argument("--long", action="store_true", help="also each preset's description")
    args = parser.parse_args(argv)
    from keras_vit.presets import registry  # the package registers every family

    families = sorted(registry._FAMILIES)
    if args.family is not None:
        try:
            families = registry.matching_families(args.family)
        except ValueError:
            parser.error(
                f"--family must be one of {', '.join(families)} or a prefix of some (e.g. dpt), not {args.family!r}"
            )
    from keras_vit.presets.published import PARAMETERS
    from keras_vit.presets.published import PUBLISHED
    from keras_vit.presets.published import parameters_text

    rows = []
    for family in families:
        for name in registry.list_presets(family):
            entry = registry._FAMILIES[family].presets[name]
            score = PUBLISHED[name][0] or "-"
            rows.append((name, family, parameters_text(PARAMETERS[name]), _input_size(entry), _weights_from(entry),
                         score, entry["description"]))
    header = ("name", "family", "params", "input", "weights from", "published", "description")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(6)]
    for row in [header, *rows]:
        line = "  ".join(f"{value:<{width}}" for value, width in zip(row, widths))
        print(f"{line}  {row[6]}" if args.long else line.rstrip())
    return 0


def _weights_from(entry):
    """Where a preset's weights come from: a hub repo or the original release's file."""
    source = (
        entry.get("source") or entry.get("timm") or entry.get("original") or entry.get("official") or entry.get("detectron2") or ""
    )
    return str(source)


def _input_size(entry):
    """The input size a preset's table entry gives (`HxW`), "any" if it gives none, or ''."""
    size = (entry.get("preprocessing") or {}).get("image_size") or entry.get("image_size")
    if size is None and isinstance(entry.get("backbone"), dict):
        size = entry["backbone"].get("image_shape", (None,))[:2]
    if size is None:  # no input size in the entry: the model takes any (DETR)
        return "any"
    if isinstance(size, int):
        return f"{size}x{size}"
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return f"{size[0]}x{size[1]}"
    return ""


def _is_detr(source):
    """A DETR preset name or a DETR checkpoint file (told apart by its tensor names)."""
    from keras_vit.presets.detr_presets import DETR_PRESETS

    if source in DETR_PRESETS:
        return True
    if not os.path.isfile(source):
        return False
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.detr import detect_detr_format

    try:
        detect_detr_format(read_checkpoint(source))
    except ValueError:
        return False
    return True


def _is_vitdet(source):
    """A ViTDet preset name, or a detectron2 `.pkl` / transformers `VitDetBackbone` file."""
    from keras_vit.presets.vitdet_presets import VITDET_PRESETS

    if source in VITDET_PRESETS:
        return True
    if not os.path.isfile(source):
        return False
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.vitdet import detect_vitdet_layout

    try:
        return detect_vitdet_layout(read_checkpoint(source)) in ("detectron2", "transformers")
    except ValueError:
        return False


def convert(argv, prog=f"{PROG} convert", epilog=None):
    """Converts a checkpoint (or fetches a preset) and writes a preset directory."""
    parser = command_parser(prog, COMMANDS["convert"][1], epilog)
    parser.add_argument(
        "source", help="preset name, checkpoint file (.npz, .safetensors, .pth, .pyth, .bin, detectron2 .pkl) or hf://org/name"
    )
    parser.add_argument("output_dir")
    parser.add_argument("--num-heads", type=int, default=None, help="for timm files of non-standard width")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--source-format", default="original", choices=["original", "transformers"],
                        help="for DETR preset names: which release to convert")
    args = parser.parse_args(argv)
    from keras_vit.presets.detr_presets import DETR_PRESETS

    overrides = {} if args.num_heads is None else {"num_heads": args.num_heads}
    if _is_detr(args.source):
        from keras_vit.models.detr import DETR

        source = args.source_format if args.source in DETR_PRESETS else None
        model = DETR.from_preset(args.source, source=source, num_classes=args.num_classes, **overrides)
        model.save_to_preset(args.output_dir, metadata={"converted_from": args.source})
        print(f"wrote {args.output_dir} ({model.count_params():,} parameters)")
        return 0
    if _is_vitdet(args.source):
        from keras_vit.backbones.vitdet_backbone import ViTDetBackbone

        if args.num_classes is not None or args.num_heads is not None:
            parser.error("--num-classes and --num-heads do not apply: a ViTDet preset is a backbone, its heads in the file")
        size = None if args.image_size is None else (args.image_size, args.image_size)
        model = ViTDetBackbone.from_preset(args.source, image_size=size)
        model.save_to_preset(args.output_dir, metadata={"converted_from": args.source})
        print(f"wrote {args.output_dir} ({model.count_params():,} parameters)")
        return 0
    from keras_vit.models.vit import ViT
    from keras_vit.presets.loader import classifier_class

    cls = classifier_class(args.source)
    if cls is not ViT and args.num_heads is not None:
        parser.error(f"--num-heads is for timm ViT files; a {cls.__name__} checkpoint states its head counts")
    model = cls.from_preset(args.source, num_classes=args.num_classes, image_size=args.image_size, **overrides)
    model.save_to_preset(args.output_dir, metadata={"converted_from": args.source})
    print(f"wrote {args.output_dir} ({model.count_params():,} parameters)")
    return 0


def evaluate(argv, prog=f"{PROG} evaluate", epilog=None):
    """Evaluates a preset with its recipe's metrics (`recipes.evaluate`)."""
    parser = command_parser(prog, COMMANDS["evaluate"][1], epilog)
    parser.add_argument("source", help="a preset folder (a recipe's preset/) or a preset name (then --dataset)")
    parser.add_argument("--dataset", default=None,
                        help="the recipe's embedded set, tfds:NAME or folder:PATH (default: the recipe run's own)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")
    parser.add_argument("--offline", action="store_true", help="never download: read tfds data already on disk")
    parser.add_argument("--output", default=None, metavar="FILE", help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be a positive int, not {args.batch_size}")
    from recipes import evaluate as evaluation
    from recipes import tfds_data

    try:
        evaluation.main(args.source, args.dataset, args.batch_size, args.data_dir, args.offline, args.output)
    except (ValueError, tfds_data.OfflineError, tfds_data.MissingTFDS) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    return 0


def predict(argv, prog=f"{PROG} predict", epilog=None):
    """Loads a preset (any family) and writes predictions for image files (`keras_vit.prediction`)."""
    parser = command_parser(prog, COMMANDS["predict"][1], epilog)
    parser.add_argument("source", help="a preset name (keras-vit presets) or a preset folder (a recipe's preset/)")
    parser.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--output", default="predictions", help="the folder to write")
    parser.add_argument("--class-names", default=None, metavar="FILE",
                        help="a text file with one class name per line (default: the preset's, if it has them)")
    parser.add_argument("--top-k", type=int, default=5, help="classes kept per image (ViT)")
    parser.add_argument("--threshold", type=float, default=0.5, help="DETR's score threshold")
    parser.add_argument("--image-size", type=int, default=None,
                        help="DETR: the working size's shorter side (default: the recipe's size, or 800)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be a positive int, not {args.top_k}")
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be in [0, 1], not {args.threshold}")
    if args.image_size is not None and args.image_size < 1:
        parser.error(f"--image-size must be a positive int, not {args.image_size}")
    from keras_vit.presets.preset_directory import read_metadata

    try:
        metadata = read_metadata(args.source)
    except ValueError as error:
        parser.error(str(error))
    class_names = metadata.get("class_names")
    if args.class_names is not None:
        if not os.path.isfile(args.class_names):
            parser.error(f"--class-names: no file {args.class_names!r}")
        with open(args.class_names, encoding="utf-8") as f:
            class_names = [line.strip() for line in f if line.strip()]
    # A recipe's DETR trains at its own size (shorter side and longer side at most image_size).
    recipe_size = (metadata.get("config") or {}).get("image_size") if metadata.get("recipe") == "detr_detection" else None
    size = args.image_size or recipe_size
    from keras_vit.prediction import predict_files

    model = _load_preset(parser, args.source)
    try:
        results = predict_files(
            model, args.images, args.output, class_names=class_names, top_k=args.top_k,
            score_threshold=args.threshold, image_size=size, max_size=recipe_size if size == recipe_size else None,
        )
    except ValueError as error:  # an unreadable image or an empty folder: named in the message
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {os.path.join(args.output, 'predictions.json')} and {len(results['images'])} picture(s) "
          f"({results['task']})")
    return 0


def benchmark(argv, prog=f"{PROG} benchmark", epilog=None):
    """Times a preset's steps (`keras_vit.benchmarking`); the weights are not needed."""
    parser = command_parser(prog, COMMANDS["benchmark"][1], epilog)
    parser.add_argument("source", help="a preset name or folder (built without its weights: speed does not need them)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, for compilation")
    _add_image_size(parser)
    parser.add_argument("--no-train", action="store_true", help="time inference only")
    parser.add_argument("--output", default=None, metavar="FILE", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    for name in ("batch_size", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive int, not {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, not {args.warmup}")
    size = _image_size(parser, args)
    from keras_vit.benchmarking import benchmark as run_benchmark
    from keras_vit.utils.files import write_json_atomically

    model = _load_preset(parser, args.source, load_weights=False)
    print(f"{type(model).__name__} ({model.count_params():,} parameters) on {os.environ.get('KERAS_BACKEND', 'the default backend')}, "
          f"batch {args.batch_size}: {args.warmup} warm-up and {args.steps} timed steps", flush=True)
    try:
        results = run_benchmark(model, args.batch_size, args.steps, args.warmup, size, train=not args.no_train)
    except ValueError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    print(f"peak memory: {results['peak_memory_mb']:.0f} MB")
    if args.output is not None:
        write_json_atomically(args.output, {"preset": args.source, **results})
        print(f"wrote {args.output}")
    return 0


def _load_preset(parser, source, **kwargs):
    """`Task.from_preset(source)`, a user error (unknown name, missing
    folder or file, a folder that is no preset) as one line and exit 2."""
    from keras_vit.models.task import Task

    try:
        return Task.from_preset(source, **kwargs)
    except (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        parser.error(f"{source}: {error}" if source not in str(error) else str(error))


def _add_image_size(parser):
    parser.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                        help="H [W] (W defaults to H): required for DETR; default: the preset's input size")


def _image_size(parser, args):
    """`--image-size` as `(H, W)` or None; a usage error for other than one or two values."""
    if args.image_size is None:
        return None
    if len(args.image_size) not in (1, 2):
        parser.error(f"--image-size takes H or H W, not {len(args.image_size)} values")
    return (args.image_size[0], args.image_size[-1])


def export(argv, prog=f"{PROG} export", epilog=None):
    """Loads a preset (any family) and writes it with `Task.export`."""
    parser = command_parser(prog, COMMANDS["export"][1], epilog)
    parser.add_argument("source", help="a preset name (keras-vit presets) or a preset folder (a recipe's preset/)")
    parser.add_argument("output", help="the ONNX file or the SavedModel folder to write")
    parser.add_argument("--format", default="onnx", choices=["onnx", "tf_saved_model"])
    _add_image_size(parser)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="a fixed batch size (default: dynamic)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip running the artifact against the Keras model before it is kept")
    args = parser.parse_args(argv)
    size = _image_size(parser, args)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be a positive int, not {args.batch_size}")
    from keras_vit.export import check_destination
    from keras_vit.export import export_task

    try:  # before the model loads: a bad destination fails at once
        check_destination(args.output, args.format)
    except ValueError as error:
        parser.error(str(error))

    model = _load_preset(parser, args.source)
    print(f"exporting {type(model).__name__} ({model.count_params():,} parameters) to {args.format} ...", flush=True)
    try:
        export_task(model, args.output, format=args.format, image_size=size, batch_size=args.batch_size,
                    verify=not args.no_verify, verbose=False)
    except (NotImplementedError, RuntimeError, ValueError, ImportError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    checked = "" if args.no_verify else ", checked against the Keras model with onnxruntime/TensorFlow"
    print(f"wrote {args.output}{checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
