"""Step time of the distributed path against one device, on this machine's CPU.

    python benchmarks/distribution_overhead.py            # every backend
    python benchmarks/distribution_overhead.py --backends torch

One ViT training step (32x32 images, patch 4, width 64, 4 blocks, global
batch 64, AdamW), median of 10 `train_on_batch` calls after 3 of warm-up:
one device, then data parallel (JAX: 8 virtual XLA devices; TensorFlow:
MirroredStrategy over 2 logical CPUs; torch: 2 gloo processes under torchrun,
each computing half the batch). The virtual devices share the same cores, so
the ratio is the cost of the distributed machinery (partitioning, the
all-reduces), not a speed-up.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOBAL_BATCH = 64


def _measure(mode, logical_cpus=0):
    import keras
    import numpy as np

    if logical_cpus and keras.backend.backend() == "tensorflow":
        from keras_vit.backend.tf_distribute import split_logical_cpus

        split_logical_cpus(logical_cpus)
    import keras_vit
    from keras_vit import distribution

    plan = distribution.configure(mode)
    index, count = plan.process_shard()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(GLOBAL_BATCH, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(GLOBAL_BATCH,))
    part = GLOBAL_BATCH // count
    x, y = x[index * part:(index + 1) * part], y[index * part:(index + 1) * part]
    keras.utils.set_random_seed(0)
    with plan.scope():
        backbone = keras_vit.ViTBackbone(
            image_shape=(32, 32, 3), patch_size=4, hidden_dim=64, num_layers=4, num_heads=4, mlp_dim=128
        )
        model = keras_vit.ViT(backbone, num_classes=10, preprocessor=keras_vit.ViTImagePreprocessor(32))
        plan.prepare_model(model)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        times = []
        for step in range(13):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            if step >= 3:
                times.append(time.perf_counter() - start)
    return {"mode": mode, "replicas": plan.replicas, "ms_per_step": 1000 * float(np.median(times)),
            "chief": plan.is_chief}


def _child(args):
    for mode in args.modes:
        result = _measure(mode, args.logical_cpus)
        if result["chief"]:
            print("RESULT " + json.dumps(result), flush=True)
    if args.backend == "torch":
        from keras_vit.backend import torch_distributed

        torch_distributed.shutdown()


def _run(command, env):
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return [json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--modes", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--logical-cpus", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    me = os.path.abspath(__file__)
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
        env.pop("XLA_FLAGS", None)
        child = [sys.executable, me, "--child", "--backend", backend]
        if backend == "jax":
            env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
            results = _run(child + ["--modes", "none", "data"], env)
        elif backend == "tensorflow":
            results = _run(child + ["--modes", "none", "data", "--logical-cpus", "2"], env)
        else:
            results = _run(child + ["--modes", "none"], env)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            results += _run([
                sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={port}", me, "--child", "--backend", backend, "--modes", "data",
            ], env)
        one, many = results
        print(
            f"{backend:10s} one device {one['ms_per_step']:7.1f} ms/step   data parallel x{many['replicas']} "
            f"{many['ms_per_step']:7.1f} ms/step   ratio {many['ms_per_step'] / one['ms_per_step']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
