"""Killed at any moment, a rerun of `keras-vit train` / `detect` / `segment`
finishes with exactly the weights of an uninterrupted run.

Real processes, real SIGKILLs: once while a per-epoch backup is being
written, once while the final preset is being written (the writers are slowed
by `KERAS_VIT_TEST_WRITE_PAUSE` so that the kill lands mid-write), and once at
a random moment. After the last rerun the preset's weights equal, bit for
bit, those of a run that was never interrupted, and results.json and the
training curve cover every epoch.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMMANDS = {
    # Dropout and stochastic depth: the model's random state (SeedGenerator
    # variables on JAX and TensorFlow, torch's global generator on torch) must
    # come back with the weights, on every backend.
    "train": [
        "train", "--epochs", "3", "--num-layers", "2", "--hidden-dim", "16", "--num-heads", "2", "--mlp-dim", "16",
        "--image-size", "8", "--patch-size", "2", "--batch-size", "128", "--dropout-rate", "0.1",
        "--drop-path-rate", "0.1",
    ],
    "detect": [
        "detect", "--epochs", "3", "--num-train", "24", "--num-test", "8", "--image-size", "64", "--batch-size", "8",
        "--hidden-dim", "16", "--num-heads", "2", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "16",
        "--eval-every", "2",
    ],
    # DPT segmentation has dropout in its head, and evaluates every 2 epochs.
    "segment": [
        "segment", "--epochs", "3", "--num-train", "24", "--num-test", "8", "--image-size", "32", "--batch-size", "8",
        "--hidden-dim", "16", "--num-heads", "2", "--num-layers", "4", "--mlp-dim", "16", "--fusion-width", "8",
        "--eval-every", "2",
    ],
}


def _env(tmp_path, pause=None):
    env = dict(os.environ)
    env["KERAS_HOME"] = str(tmp_path / "keras_home")
    # Deterministic kernels, so that two runs can be compared bit for bit.
    env["TF_DETERMINISTIC_OPS"] = "1"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    # One XLA compilation cache for the test's processes (JAX): each rerun
    # loads the steps the first run compiled (the same executables, so the
    # bit-for-bit comparison holds) instead of compiling them again.
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env.pop("KERAS_VIT_TEST_WRITE_PAUSE", None)
    if pause:
        env["KERAS_VIT_TEST_WRITE_PAUSE"] = str(pause)
    return env


def _start(command, output, env, log):
    return subprocess.Popen(
        [sys.executable, "-m", "keras_vit.cli", *COMMANDS[command], "--output", str(output)],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )


def _run(command, output, env, log_path):
    with open(log_path, "ab") as log:
        code = _start(command, output, env, log).wait(timeout=600)
    assert code == 0, open(log_path, errors="replace").read()[-3000:]


def _kill_when(command, output, env, log_path, ready, timeout=300):
    """Starts the command and SIGKILLs it as soon as `ready()` is true."""
    with open(log_path, "ab") as log:
        process = _start(command, output, env, log)
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"finished before the kill point:\n{open(log_path, errors='replace').read()[-3000:]}")
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()


def _weights(preset):
    arrays = {}
    with h5py.File(os.path.join(preset, "model.weights.h5"), "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, np.asarray(item)) if isinstance(item, h5py.Dataset) else None)
    return arrays


# What is backend-specific in a resume (the optimizer's and the random state,
# the compiled step) is the same for every task, and the train case checks it
# on every backend. What each task adds (its recipe's evaluations, DETR's
# matching, DPT's auxiliary head) is backend-independent recipe code: those
# cases run in one tier, the quickest, rather than 4 processes each again.
_ONE_TIER = pytest.mark.one_backend(
    "torch", "the task's resume is backend-independent recipe code; the train case checks each backend's state"
)


@pytest.mark.parametrize(
    "command", ["train", pytest.param("detect", marks=_ONE_TIER), pytest.param("segment", marks=_ONE_TIER)]
)
def test_killed_runs_resume_to_the_uninterrupted_result(command, tmp_path):
    log = tmp_path / "log.txt"
    reference = tmp_path / "reference"
    _run(command, reference, _env(tmp_path), log)

    output = tmp_path / "killed"
    backup = output / "backup"
    # 1. Killed while the backup of epoch 2 is being written (after epoch 1's is in place).
    _kill_when(
        command, output, _env(tmp_path, pause=0.3), log,
        lambda: glob.glob(str(backup / ".epoch-000002.*.partial")) and (backup / "epoch-000001").is_dir(),
    )
    assert not (output / "preset").exists()
    # 2. The rerun resumes after epoch 1; killed while the final preset is being written.
    _kill_when(
        command, output, _env(tmp_path, pause=0.3), log,
        lambda: glob.glob(str(output / ".preset.*.partial")),
    )
    assert "resuming after epoch 1" in log.read_text()
    assert not (output / "preset").exists() and (backup / "epoch-000003").is_dir()
    # 3. (train) At a random moment of the next rerun (it may also have
    # finished by then); then a last rerun to the end.
    if command == "train":
        rng = np.random.default_rng()
        with open(log, "ab") as handle:
            process = _start(command, output, _env(tmp_path), handle)
            time.sleep(rng.uniform(0.5, 6.0))
            process.send_signal(signal.SIGKILL)
            process.wait()
    if backup.exists():  # not finished yet (a finished run is not rerun: it would be refused)
        _run(command, output, _env(tmp_path), log)
    # The backup of epoch 3 was used by whichever rerun came first after 2.
    assert "resuming after epoch 3" in log.read_text()

    expected, got = _weights(reference / "preset"), _weights(output / "preset")
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    results = json.loads((output / "results.json").read_text())
    assert [row["epoch"] for row in results["history"]] == [1, 2, 3]
    assert results["resumed_after_epoch"] in (3, None)  # None: run 3 had finished
    reference_results = json.loads((reference / "results.json").read_text())
    assert [row["loss"] for row in results["history"]] == [row["loss"] for row in reference_results["history"]]
    if command == "detect":
        assert [row["epoch"] for row in results["evaluations"]] == [2]
    if command == "segment":  # every 2 epochs and after the last
        assert [row["epoch"] for row in results["evaluations"]] == [2, 3]
    assert os.path.getsize(output / "training_curve.png") > 1000
    # Everything in place: the backup and every staging leftover are gone.
    assert not backup.exists()
    assert not [p for p in os.listdir(output) if p.startswith(".")]
