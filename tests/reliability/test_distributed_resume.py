"""A distributed `keras-vit train`, killed while the chief writes a backup,
resumes on the same devices to exactly the weights of an uninterrupted
distributed run: JAX data parallel over 8 virtual devices, and 2 torch gloo
processes under torchrun (the whole process group is SIGKILLed). Only the
chief writes: one backup, one preset.
"""

import glob
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKEND = keras.backend.backend()
TRAIN = [
    "train", "--epochs", "3", "--num-layers", "1", "--hidden-dim", "16", "--num-heads", "2", "--mlp-dim", "16",
    "--image-size", "8", "--patch-size", "2", "--batch-size", "128", "--distribute", "data",
]

pytestmark = pytest.mark.skipif(BACKEND not in ("jax", "torch"), reason="JAX (8 devices) and torch (2 processes)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(output):
    if BACKEND == "torch":
        launcher = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}", "-m", "keras_vit.cli",
        ]
    else:
        launcher = [sys.executable, "-m", "keras_vit.cli"]
    return launcher + TRAIN + ["--output", str(output)]


def _descendants(pid):
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill_job(process):
    """SIGKILLs the launcher and every process it started, as a crash of the machine would."""
    for pid in [process.pid] + _descendants(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def _env(tmp_path, pause=None):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_VIT_TEST_WRITE_PAUSE", "XLA_FLAGS")}
    env.update(KERAS_HOME=str(tmp_path / "keras_home"), PYTHONPATH=REPO, TF_DETERMINISTIC_OPS="1")
    if BACKEND == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
        # One compilation cache for the test's processes: reruns load the steps
        # the first run compiled (the same executables) instead of compiling again.
        env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax_cache")
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    if pause:
        env["KERAS_VIT_TEST_WRITE_PAUSE"] = str(pause)
    return env


def _weights(preset):
    arrays = {}
    with h5py.File(os.path.join(preset, "model.weights.h5"), "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, np.asarray(item)) if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_killed_distributed_run_resumes_to_the_uninterrupted_result(tmp_path):
    log_path = tmp_path / "log.txt"
    with open(log_path, "ab") as log:
        reference = tmp_path / "reference"
        code = subprocess.run(_command(reference), env=_env(tmp_path), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode
        assert code == 0, log_path.read_text(errors="replace")[-3000:]

        output = tmp_path / "killed"
        backup = output / "backup"
        # Killed (every process of the job) while the backup of epoch 2 is
        # being written, after epoch 1's is in place.
        process = subprocess.Popen(
            _command(output), env=_env(tmp_path, pause=0.3), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while not (glob.glob(str(backup / ".epoch-000002.*.partial")) and (backup / "epoch-000001").is_dir()):
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.02)
        _kill_job(process)
        assert not (output / "preset").exists()

        code = subprocess.run(_command(output), env=_env(tmp_path), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode
        text = log_path.read_text(errors="replace")
        assert code == 0, text[-3000:]
    # The chief says it resumed (a process that had not would have computed
    # its half of each batch with other weights, and the result would
    # differ); only the chief wrote.
    assert text.count("resuming after epoch 1") == 1
    assert "resumed_after_epoch\": 1" in text
    assert sorted(os.listdir(output)) == ["attention_maps.png", "preset", "results.json", "run.json", "training_curve.png"]
    expected, got = _weights(reference / "preset"), _weights(output / "preset")
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
