"""ViT throughput on this machine, per backend, against its measured matmul peak.

    python benchmarks/bench_vit.py                    # all backends, writes benchmarks/results.json
    python benchmarks/bench_vit.py --only matmul      # just the matmul peak
    KERAS_BACKEND=jax python benchmarks/bench_vit.py --worker model   # one backend, one process

Measured:
- the best float32 matmul GFLOP/s of numpy (OpenBLAS, with OPENBLAS_CORETYPE set
  to SkylakeX and to the machine's default), jax, TensorFlow and torch;
- ViT-B/16 forward, batch 8 at 224, float32 (35.1 GFLOP per image), images/s
  and the fraction of the matmul peak it reaches;
- ViT-Ti/16 training step, batch 16, AdamW, cross-entropy, images/s;
- peak resident memory of each process.

Each backend runs in its own process (Keras reads KERAS_BACKEND at import).
Benchmarks may import the frameworks; the library may not.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("jax", "tensorflow", "torch")


def vit_forward_flops(image_size=224, patch=16, width=768, depth=12, mlp=3072, classes=1000):
    """Multiply-adds x 2 of a ViT forward pass for one image (softmax etc. ignored)."""
    grid = image_size // patch
    tokens = grid * grid + 1
    patch_embed = grid * grid * patch * patch * 3 * width
    per_block = 4 * tokens * width * width + 2 * tokens * tokens * width + 2 * tokens * width * mlp
    return 2 * (patch_embed + depth * per_block + width * classes)


def _best_time(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), sorted(times)[len(times) // 2]


def matmul_worker(framework, size=4096, repeats=5):
    """GFLOP/s of one float32 (size x size) @ (size x size) matmul."""
    import numpy as np

    a = np.random.default_rng(0).normal(size=(size, size)).astype("float32")
    b = np.random.default_rng(1).normal(size=(size, size)).astype("float32")
    if framework == "numpy":
        fn = lambda: a @ b  # noqa: E731
    elif framework == "jax":
        import jax

        ja, jb = jax.device_put(a), jax.device_put(b)
        mm = jax.jit(lambda x, y: x @ y)
        fn = lambda: mm(ja, jb).block_until_ready()  # noqa: E731
    elif framework == "tensorflow":
        import tensorflow as tf

        ta, tb = tf.constant(a), tf.constant(b)
        mm = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=False)
        fn = lambda: mm(ta, tb).numpy()  # noqa: E731
    elif framework == "torch":
        import torch

        pa, pb = torch.from_numpy(a), torch.from_numpy(b)
        fn = lambda: torch.matmul(pa, pb)  # noqa: E731
    else:
        raise ValueError(framework)
    best, median = _best_time(fn, repeats)
    flops = 2 * size**3
    return {"best_gflops": flops / best / 1e9, "median_gflops": flops / median / 1e9}


def model_worker(repeats):
    import keras
    import numpy as np

    import keras_vit

    backend = keras.backend.backend()
    results = {"backend": backend}

    # ViT-B/16 forward, batch 8, float32.
    model = keras_vit.ViT.from_preset("vit_b16", load_weights=False)
    x = np.random.default_rng(0).normal(size=(8, 224, 224, 3)).astype("float32")
    best, median = _best_time(lambda: model.predict_on_batch(x), repeats)
    results["vit_b16_forward_images_per_s"] = 8 / best
    results["vit_b16_forward_images_per_s_median"] = 8 / median
    results["vit_b16_forward_gflops"] = vit_forward_flops() * 8 / best / 1e9
    del model

    # ViT-Ti/16 training step, batch 16, AdamW + cross-entropy.
    model = keras_vit.ViT.from_preset("vit_ti16", load_weights=False)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.random.default_rng(0).normal(size=(16, 224, 224, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 1000, size=(16,))
    best, median = _best_time(lambda: model.train_on_batch(x, y), repeats)
    results["vit_ti16_train_images_per_s"] = 16 / best
    results["vit_ti16_train_images_per_s_median"] = 16 / median
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def _run_worker(args, env_update):
    env = dict(os.environ, **env_update)
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=1800
    )
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"worker {args} {env_update} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=["matmul", "model"])
    parser.add_argument("--framework", default="numpy")
    parser.add_argument("--only", choices=["matmul", "model"])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"))
    args = parser.parse_args()
    if args.worker == "matmul":
        print(json.dumps(matmul_worker(args.framework)))
        return
    if args.worker == "model":
        print(json.dumps(model_worker(args.repeats)))
        return

    results = {"nproc": os.cpu_count(), "vit_b16_forward_gflop_per_image": vit_forward_flops() / 1e9}
    if args.only in (None, "matmul"):
        matmul = {}
        for coretype in ("SkylakeX", os.environ.get("OPENBLAS_CORETYPE", "default")):
            env = {"OPENBLAS_CORETYPE": coretype} if coretype != "default" else {}
            matmul[f"numpy[OPENBLAS_CORETYPE={coretype}]"] = _run_worker(
                ["--worker", "matmul", "--framework", "numpy"], env
            )
        for framework in BACKENDS:
            matmul[framework] = _run_worker(["--worker", "matmul", "--framework", framework], {})
        for name, value in matmul.items():
            print(f"matmul {name:35s} {value['best_gflops']:7.1f} GFLOP/s", flush=True)
        results["matmul"] = matmul
        results["matmul_peak_gflops"] = max(v["best_gflops"] for v in matmul.values())
    if args.only in (None, "model"):
        peak = results.get("matmul_peak_gflops")
        for backend in args.backends.split(","):
            r = _run_worker(["--worker", "model", "--repeats", str(args.repeats)], {"KERAS_BACKEND": backend})
            if peak:
                r["vit_b16_forward_fraction_of_peak"] = r["vit_b16_forward_gflops"] / peak
            results[backend] = r
            print(
                f"{backend:10s} ViT-B/16 forward {r['vit_b16_forward_images_per_s']:6.2f} img/s "
                f"({r['vit_b16_forward_gflops']:.0f} GFLOP/s"
                + (f", {100 * r['vit_b16_forward_fraction_of_peak']:.0f}% of peak" if peak else "")
                + f"), ViT-Ti/16 train {r['vit_ti16_train_images_per_s']:6.2f} img/s, "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
