"""Where the time of a ViT-Ti/16 training step (or a ViT-B/16 forward) goes, per backend.

    python benchmarks/profile_step.py                        # train step, every backend
    python benchmarks/profile_step.py --work forward --top 15
    KERAS_BACKEND=jax python benchmarks/profile_step.py --worker --work train

Each backend's own profiler, on the same `train_on_batch` / `predict_on_batch`
call as benchmarks/bench_peers.py (batch 16 at 224 for training, 8 for the
forward), after two warm-up calls:
- JAX: `jax.profiler.trace`; the XSpace file is read back with jaxlib's
  profile reader and the XLA thunks (one per fused kernel) are summed.
- TensorFlow: `tf.profiler.experimental`; the same reader sums TF's kernels.
- torch: `torch.profiler`, summed by operator (self CPU time).
Kernels are grouped by kind (a fusion's name without its number, e.g.
`copy_bitcast_fusion.46` -> `copy_bitcast_fusion`) and printed with their share
of the measured kernel time. `--dump DIR` (JAX) also writes XLA's optimized HLO,
to see what a fusion computes.
"""

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _group(name):
    name = re.sub(r"\.\d+$", "", name)  # XLA: copy_bitcast_fusion.46 -> copy_bitcast_fusion
    return name.rsplit(":", 1)[-1]  # TF: scope/op:Type -> Type


def _xspace_kernels(directory, backend):
    """{kernel kind: total ns} from the XSpace file a JAX or TF trace wrote."""
    from jax._src.lib import _profile_data

    path = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True))[-1]
    totals = collections.Counter()
    for plane in _profile_data.ProfileData.from_file(path).planes:
        for line in plane.lines:
            if backend == "jax":
                # XLA's CPU thunks run on its Eigen pool; the executor's own spans nest the kernels.
                if "XLAEigen" not in line.name:
                    continue
                skip = ("ThunkExecutor", "SlinkyThreadPool")
            else:
                # TF: the executor's per-kernel spans ("tf_Compute" and the inter-op pool).
                if not (line.name.startswith("tf_") and plane.name.startswith("/host:CPU")):
                    continue
                skip = ("ExecutorState", "ThreadpoolListener", "EagerExecute", "Iterator")
            for event in line.events:
                if event.name.startswith(skip):
                    continue
                totals[_group(event.name)] += event.duration_ns
    return totals


def worker(work, steps, top):
    import keras

    from bench_peers import keras_step

    backend = keras.backend.backend()
    step, _, _ = keras_step("keras_vit", {"train": "vit_ti_train", "forward": "vit_b_forward"}[work])
    for _ in range(2):
        step()
    directory = tempfile.mkdtemp(prefix="keras_vit_profile_")
    if backend == "jax":
        import jax

        with jax.profiler.trace(directory):
            for _ in range(steps):
                step()
        totals = _xspace_kernels(directory, backend)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.profiler.experimental.start(directory)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        totals = _xspace_kernels(directory, backend)
    else:
        import torch

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            for _ in range(steps):
                step()
        totals = collections.Counter()
        for event in profiler.key_averages():
            totals[event.key] += int(event.self_cpu_time_total * 1000)  # us -> ns
    total = sum(totals.values()) or 1
    rows = [
        {"kernel": name, "ms_per_step": ns / steps / 1e6, "share": ns / total}
        for name, ns in totals.most_common(top)
    ]
    return {"backend": backend, "work": work, "kernel_ms_per_step": total / steps / 1e6, "top": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", choices=["train", "forward"], default="train")
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--dump", help="JAX: also write XLA's optimized HLO into this folder")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.work, args.steps, args.top)))
        return
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        if args.dump and backend == "jax":
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_dump_to={args.dump}").strip()
        command = [sys.executable, __file__, "--worker", "--work", args.work, "--steps", str(args.steps),
                   "--top", str(args.top)]
        out = subprocess.run(command, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"profiling on {backend} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\n{backend}: {args.work}, {result['kernel_ms_per_step']:.0f} ms of kernels per step (all threads)")
        for row in result["top"]:
            print(f"  {row['ms_per_step']:8.1f} ms  {100 * row['share']:5.1f}%  {row['kernel']}")


if __name__ == "__main__":
    main()
