"""The `keras-vit` command as a new user tries it: the help, no command, an
unknown or misspelt command, bad options (one line, exit code 2, no
traceback), every recipe reachable under its own `keras-vit COMMAND` usage
line, `--backend`, and the preset table."""

import os
import re
import subprocess
import sys

import keras
import pytest

import keras_vit
from keras_vit import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_presets_prints_one_row_per_preset(capsys):
    assert cli.main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "params", "input", "weights", "from", "published"]
    assert [line.split()[0] for line in lines[1:]] == [
        name
        for family in ("detr", "dpt_depth", "dpt_segmentation", "mvit", "segmenter", "swin", "vit", "vitdet")
        for name in keras_vit.list_presets(family)
    ]
    vit_b16 = next(line for line in lines if line.startswith("vit_b16 "))
    assert vit_b16.split() == [
        "vit_b16", "vit", "86.6M", "224x224", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "ImageNet", "top-1",
        "85.11",
    ]
    detr_r50 = next(line for line in lines if line.startswith("detr_r50 "))
    assert detr_r50.split() == ["detr_r50", "detr", "41.6M", "any", "detr-r50-e632da11.pth", "COCO", "box", "AP", "42.0"]
    vitdet_b = next(line for line in lines if line.startswith("vitdet_b "))
    assert vitdet_b.split()[:5] == [
        "vitdet_b", "vitdet", "91.4M", "1024x1024", "ViTDet/COCO/mask_rcnn_vitdet_b/f325346929/model_final_61ccd1.pkl"
    ]
    assert cli.main(["presets", "--long", "--family", "vit"]) == 0
    long_b16 = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("vit_b16 "))
    assert long_b16.endswith("ViT-B/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg2).")
    assert cli.main(["presets", "--family", "segmenter"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == keras_vit.list_presets("segmenter")
    assert cli.main(["presets", "--family", "dpt"]) == 0  # a prefix: both DPT families
    rows = capsys.readouterr().out.splitlines()[1:]
    assert {row.split()[1] for row in rows} == {"dpt_depth", "dpt_segmentation"}
    assert cli.main(["presets", "--family", "vitt"]) == 2
    assert "--family must be one of detr, dpt_depth, dpt_segmentation, mvit, segmenter, swin, vit, vitdet or a prefix of some (e.g. dpt), not 'vitt'" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("command", ["train", "detect", "depth", "segment"])
def test_each_recipe_command_reaches_its_recipe(command, capsys):
    # A bad option is refused by the recipe's own parser: one line, exit code 2.
    assert cli.main([command, "--seed", "-1"]) == 2  # refused at once, not 20 s into the run
    assert "expected a seed in [0, 2**32), got '-1'" in capsys.readouterr().err
    assert cli.main([command, "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert f"usage: keras-vit {command} " in err
    assert f"keras-vit {command}: error: argument --epochs: expected a positive integer, got '0'" in err
    assert "Traceback" not in err
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: keras-vit {command} ") and "examples:\n  keras-vit " in out


def test_no_command_unknown_commands_and_bad_global_options(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: keras-vit [--backend {jax,tensorflow,torch}] COMMAND")
    assert "keras-vit: error: a command is required" in err
    assert cli.main(["nope"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "keras-vit: error: unknown command 'nope'; commands: train, finetune, detect, depth, segment, predict, evaluate, convert, export, benchmark, presets"
    )
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian' (did you mean 'train'?)" in capsys.readouterr().err
    assert cli.main(["--epochs", "3"]) == 2
    assert "unknown option '--epochs'" in capsys.readouterr().err
    assert cli.main(["--backend", "mxnet", "train"]) == 2
    assert "--backend must be one of jax, tensorflow, torch, not 'mxnet'" in capsys.readouterr().err
    assert cli.main(["train", "--backend"]) == 2
    assert "--backend needs a value" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert f"\n  {command} " in out
    assert cli.main(["convert"]) == 2
    assert "keras-vit convert: error: the following arguments are required: source, output_dir" in (
        capsys.readouterr().err
    )


def test_backend_option_refuses_a_second_backend_in_one_process(capsys):
    other = "torch" if keras.backend.backend() != "torch" else "jax"
    assert cli.main(["--backend", other, "presets"]) == 2
    assert f"Keras is already imported with the {keras.backend.backend()} backend" in capsys.readouterr().err


def test_a_backend_that_is_not_installed_is_named_with_its_extra(monkeypatch, capsys):
    import importlib.util

    monkeypatch.setitem(sys.modules, "keras", None)  # as before Keras is imported
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert cli.select_backend(None) == (
        "the jax backend is selected but jax is not installed: pip install -e \".[jax]\" (or choose another with "
        "--backend)"
    )


def test_a_missing_default_backend_is_named_when_none_is_chosen(monkeypatch, capsys, tmp_path):
    """No KERAS_BACKEND, and Keras' default (TensorFlow) not installed: one
    line naming the extra and the installed backends, not a traceback."""
    import importlib.util

    monkeypatch.setitem(sys.modules, "keras", None)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no keras.json: TensorFlow
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "jax" else None)
    assert cli.select_backend(None) == (
        "Keras' default backend is tensorflow, which is not installed: pip install -e \".[tensorflow]\", "
        "or run with --backend jax (installed: jax)"
    )
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert cli.select_backend(None) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["benchmark", "vit_tiny"],
        ["predict", "runs/nonexistent", "digit.png"],
        ["export", "no_such_preset", "out.onnx"],
    ],
    ids=["unknown-preset", "missing-folder", "export-unknown"],
)
def test_a_bad_preset_is_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err and argv[1] in err


def _imports(*args, backend):
    """The modules a `python -m keras_vit.cli ARGS` process imports (`-X importtime`)."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_vit.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    modules = {line.split("|")[-1].strip() for line in process.stderr.splitlines() if line.startswith("import time:")}
    return process.returncode, modules, process


def test_help_and_usage_errors_import_no_keras_and_backend_selects_before_keras():
    for args, expected in ((["--help"], 0), ([], 2), (["nope"], 2)):
        code, modules, _ = _imports(*args, backend=keras.backend.backend())
        assert code == expected, args
        assert not {"keras", "tensorflow", "jax", "torch"} & modules, args
    other = "torch" if keras.backend.backend() != "torch" else "jax"
    code, modules, process = _imports("--backend", other, "train", "--epochs", "0", backend=keras.backend.backend())
    assert code == 2 and "expected a positive integer" in process.stderr
    assert f"keras.src.backend.{other}" in modules


def _help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_every_help_example_names_real_options_and_folders_that_commands_write(capsys):
    """Each example of `keras-vit --help` and of every command's help uses
    options that command has, and a `runs/<name>/preset` folder only where
    `<name>` is the default output of a recipe (the help once said
    runs/digits/preset, which nothing writes); every recipe option's help
    shows its default."""
    import shlex

    outputs = set()
    for command, (module, _, _) in cli.COMMANDS.items():
        if module is not None:
            text = _help(command, capsys)
            outputs.add(re.search(r"--output OUTPUT\s+output directory.*?\(default:\s+(runs/\w+)\)", text, re.S).group(1))
            assert re.search(r"--epochs EPOCHS\s+default: \d+", text), command
    assert outputs == {"runs/vit_classification", "runs/finetune", "runs/detr_detection", "runs/dpt_depth",
                       "runs/segmentation"}
    for command, (_, _, examples) in cli.COMMANDS.items():
        text = _help(command, capsys)
        for example in examples:
            words = shlex.split(example)
            assert words[0] == "keras-vit" and command in words, example
            for word in words:
                if word.startswith("--") and word != "--backend":
                    assert re.search(rf"(?m)^\s+{re.escape(word)}\b", text) or f", {word}" in text, (example, word)
            for path in re.findall(r"runs/\w+(?=/preset)", example):
                assert path in outputs, example


@pytest.mark.one_backend("torch", "which modules a fresh command process registers does not depend on the backend")
def test_a_fresh_command_process_knows_every_task_class(tmp_path):
    """`keras-vit` imports the task modules lazily: a Swin or MViTv2 preset
    folder must load in a fresh process (their classes were unregistered there)."""
    presets = {
        "swin": keras_vit.Swin(keras_vit.SwinBackbone(image_shape=(32, 32, 3), hidden_dim=4, depths=(1,), num_heads=(1,),
                                                      window_size=4), 3),
        "mvit": keras_vit.MViT(keras_vit.MViTBackbone(image_shape=(16, 16, 3), hidden_dim=4, depths=(1,), num_heads=1), 3),
    }
    for name, model in presets.items():
        model.save_to_preset(str(tmp_path / name))
        code, _, process = _imports(
            "benchmark", str(tmp_path / name), "--steps", "1", "--warmup", "0", "--batch-size", "1", "--no-train",
            backend="torch",
        )
        assert code == 0, process.stderr[-2000:]
        assert "inference:" in process.stdout
