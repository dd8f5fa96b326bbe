import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The JAX tier compiles thousands of small XLA programs that then run for
# milliseconds: LLVM's optimisation of the generated CPU kernels was most of
# its time. JAX's own switch for that case skips it (XLA's HLO passes, fusion
# included, still run); the subprocesses the tests start inherit it. Measured
# on 104 model/layer/predict tests: 3 min 22 s -> 1 min 58 s; the full-size
# DPT-Large test, whose kernels do run long, goes 45 -> 83 s. Set
# JAX_DISABLE_MOST_OPTIMIZATIONS=0 to test with the default compiler.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

from torchvision_shim import declare_torchvision_ops  # noqa: E402

# Must run before anything imports timm or transformers' vision code.
declare_torchvision_ops()

import keras  # noqa: E402

# Tiny, odd-sized config: a swapped axis or a wrong head split fails loudly.
TINY = {
    "image_shape": (30, 30, 3),
    "patch_size": 3,
    "hidden_dim": 32,
    "num_layers": 2,
    "num_heads": 4,
    "mlp_dim": 37,
}


@pytest.fixture(autouse=True, scope="module")
def _release_memory():
    """After each module: drop Keras's global state and collect garbage, so a
    worker does not carry one module's models and compiled steps into the next."""
    yield
    import gc

    keras.backend.clear_session()
    gc.collect()


def _resident_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


# The worker's resident size after the last collection (see _seed).
_COLLECTED_AT_MB = [0]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # Keras models hold reference cycles, which only the cyclic collector
    # frees, and it runs by object counts, not bytes: without this, a worker
    # kept every full-size model it had built (12 GB by the end of the JAX
    # tier, two workers on a 24 GB machine without swap: the machine stalled
    # and CI timed out). Collected after a test that grew the worker by 1 GB.
    if _resident_mb() > _COLLECTED_AT_MB[0] + 1000:
        import ctypes
        import gc

        gc.collect()
        try:  # glibc keeps freed blocks; give them back to the system
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        _COLLECTED_AT_MB[0] = _resident_mb()


@pytest.fixture
def memory_heavy(tmp_path_factory):
    """For tests that build full-size models (peaks of 5-12 GB): one at a
    time across the xdist workers (an inter-process lock in the run's shared
    temporary folder), so two peaks never meet on a 24 GB machine."""
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "memory_heavy.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def _memory_line(nodeid):
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0]) // 1024
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable"):
                fields["available"] = int(line.split()[1]) // 1024
    return f"{os.getpid()} rss={fields.get('VmRSS')}MB peak={fields.get('VmHWM')}MB available={fields.get('available')}MB {nodeid}\n"


def pytest_runtest_logfinish(nodeid, location):
    # KERAS_VIT_MEMORY_LOG=path: one line per test with the worker's resident
    # and peak memory (Linux only), to find the tests that grow a worker.
    path = os.environ.get("KERAS_VIT_MEMORY_LOG")
    if path and os.path.exists("/proc/self/status"):
        with open(path, "a") as f:
            f.write(_memory_line(nodeid))


def pytest_collection_modifyitems(config, items):
    # @pytest.mark.one_backend("torch", why): what the test checks does not
    # depend on the backend (a parameter count, a config table), so the other
    # tiers skip it rather than build the same full-size models again.
    backend = keras.backend.backend()
    for item in items:
        marker = item.get_closest_marker("one_backend")
        if marker is not None and marker.args[0] != backend:
            name, why = marker.args
            item.add_marker(pytest.mark.skip(reason=f"{why}: checked in the {name} tier"))
