"""Concurrent processes on one cache entry or output folder: every result whole and identical.

Real subprocesses share one KERAS_HOME and a local hub mirror; nothing is mocked.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

timm = pytest.importorskip("timm")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROCESSES = 3

WORKER = textwrap.dedent(
    """
    import hashlib, sys
    import keras
    import keras_vit
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "from_preset":
        model = keras_vit.ViT.from_preset("vit_ti16")
    else:
        from keras_vit.cli import main
        assert main(["convert", "vit_ti16", target]) == 0
        model = keras_vit.ViT.from_preset(target)
    digest = hashlib.sha256()
    for v in model.weights:
        digest.update(keras.ops.convert_to_numpy(v.value).tobytes())
    print("DIGEST", digest.hexdigest())
    """
)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """vit_ti16's source repo, written by timm with random weights."""
    import torch

    root = tmp_path_factory.mktemp("hub")
    with torch.no_grad():
        reference = timm.create_model("vit_tiny_patch16_224", pretrained=False)
        for p in reference.parameters():
            p.normal_(0, 0.05)
    path = root / "timm" / "vit_tiny_patch16_224.augreg_in21k_ft_in1k" / "resolve" / "main" / "model.safetensors"
    path.parent.mkdir(parents=True)
    safetensors_numpy.save_file({k: v.numpy().copy() for k, v in reference.state_dict().items()}, str(path))
    return root


def _run(mirror, keras_home, args, count):
    env = dict(os.environ, KERAS_VIT_HF_ENDPOINT=mirror.as_uri(), KERAS_HOME=str(keras_home), PYTHONPATH=ROOT)
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    digests = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        digests += [line.split()[1] for line in out.splitlines() if line.startswith("DIGEST")]
    return digests


def _weights_digest(path):
    import h5py

    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: digest.update(np.asarray(item).tobytes()) if hasattr(item, "shape") else None)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.one_backend("torch", "the cache's locks and atomic renames are file operations, the same on every backend")
def test_processes_racing_on_an_empty_preset_cache(mirror, tmp_path):
    (single,) = _run(mirror, tmp_path / "alone", ["from_preset", ""], 1)
    raced = _run(mirror, tmp_path / "shared", ["from_preset", ""], PROCESSES)
    assert raced == [single] * PROCESSES
    cache = tmp_path / "shared" / "keras_vit"
    assert _weights_digest(cache / "presets" / "vit_ti16" / "model.weights.h5") == _weights_digest(
        tmp_path / "alone" / "keras_vit" / "presets" / "vit_ti16" / "model.weights.h5"
    )
    leftovers = [n for d in ("presets", "downloads") for n in os.listdir(cache / d) if n.startswith(".")]
    assert leftovers == []


@pytest.mark.slow
@pytest.mark.one_backend("torch", "the cache's locks and atomic renames are file operations, the same on every backend")
def test_convert_commands_racing_on_one_output_folder(mirror, tmp_path):
    (single,) = _run(mirror, tmp_path / "alone", ["convert", str(tmp_path / "alone_out")], 1)
    raced = _run(mirror, tmp_path / "shared", ["convert", str(tmp_path / "out")], PROCESSES)
    assert raced == [single] * PROCESSES
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "metadata.json", "model.weights.h5", "preprocessor.json"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".out.")]


@pytest.mark.one_backend("torch", "the run folder's lock and record are plain files: no backend runs in them")
def test_a_run_folder_is_held_by_one_run_and_keeps_its_settings(tmp_path):
    """A second run on a folder in use is refused naming the process; a rerun
    with other settings is refused naming them; a finished run is not
    overwritten without --overwrite, which starts over."""
    from recipes.common import claim_output

    output = tmp_path / "run"
    config = {"learning_rate": 5e-4, "seed": 0}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); from recipes.common import claim_output\n"
         "with claim_output(sys.argv[2], {'learning_rate': 0.0005, 'seed': 0}):\n    print('held', flush=True); time.sleep(30)",
         os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), str(output)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"is in use by a running recipe \(process {holder.pid}\)"):
            with claim_output(str(output), config):
                pass
    finally:
        holder.kill()
        holder.wait()
    with claim_output(str(output), config):  # the same settings: resumes
        pass
    with pytest.raises(ValueError, match=r"holds a run with other settings \(learning_rate 0.0005 -> 0.002; seed 0 -> 7\)"):
        with claim_output(str(output), {"learning_rate": 2e-3, "seed": 7}):
            pass
    (output / "results.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds a finished run of these settings .* pass --overwrite"):
        with claim_output(str(output), config):
            pass
    (output / "backup").mkdir()
    (output / "preset").mkdir()
    with claim_output(str(output), {"learning_rate": 2e-3, "seed": 7}, overwrite=True):
        assert not (output / "results.json").exists() and not (output / "backup").exists()
    assert json.loads((output / "run.json").read_text())["settings"] == {"learning_rate": 2e-3, "seed": 7}


@pytest.mark.one_backend("torch", "argument handling")
def test_a_finished_run_is_not_overwritten_by_the_command(tmp_path, capsys):
    from keras_vit import cli

    output = tmp_path / "run"
    argv = ["train", "--smoke", "--output", str(output), "--num-layers", "1", "--hidden-dim", "8", "--num-heads", "2",
            "--mlp-dim", "8", "--epochs", "1"]
    assert cli.main(argv) == 0
    first = (output / "results.json").read_text()
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "holds a finished run of these settings" in error[0] and "--overwrite" in error[0]
    assert (output / "results.json").read_text() == first
    assert cli.main([*argv[:-2], "--epochs", "2"]) == 2
    assert "other settings (epochs 1 -> 2)" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite"]) == 0
