"""Is a prepared model faster to train than the same model fully trainable?

    python benchmarks/bench_tuning.py                          # ViT-B/16, every backend
    python benchmarks/bench_tuning.py --backends torch --rounds 1 --batch-size 4

The same ViT-B/16 (224 x 224, 1000 classes, random weights) trains with
`train_on_batch` (AdamW, cross-entropy) after `keras_vit.tuning.prepare` with
"full", "linear" and "vpt" (VPT-deep, 10 prompts per block), each case in its
own process, the cases of a round interleaved; a case reports the median of its
timed steps after warm-up, and the ratio to "full" is taken within each round
(the median over rounds is printed). Frozen weights get no gradient: "linear"
skips the whole backward pass of the encoder's weights (the activations'
gradients are not needed either, since nothing below the head trains), "vpt"
still back-propagates through every block to reach the prompts but computes no
weight gradient and no optimizer update for the 86M frozen weights. Writes
`results_tuning.json` beside this file.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_vit import _best_time  # noqa: E402

METHODS = {"full": ("full", {}), "linear": ("linear", {}), "vpt": ("vpt", {"num_prompts": 10, "deep": True})}


def worker(method, batch, steps, warmup):
    import keras
    import numpy as np

    import keras_vit
    from keras_vit import tuning

    model = keras_vit.ViT.from_preset("vit_b16", load_weights=False)
    name, options = METHODS[method]
    model = tuning.prepare(model, name, **options)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 1000, size=(batch,))
    seconds = _best_time(lambda: model.train_on_batch(x, y), steps, warmup)[1]
    return {
        "seconds": seconds,
        "images_per_s": batch / seconds,
        "trainable": tuning.trainable_parameters(model),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run_case(backend, method, batch, steps, warmup):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, __file__, "--worker", method, "--batch-size", str(batch), "--steps", str(steps),
               "--warmup", str(warmup)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{method} on {backend} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {backend:10s} {method:7s} {result['images_per_s']:7.3f} img/s ({1000 * result['seconds']:.0f} ms/step, "
          f"{result['trainable']:,} trainable, peak RSS {result['peak_rss_mib']:.0f} MiB)", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=os.path.join(HERE, "results_tuning.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch_size, args.steps, args.warmup)))
        return
    rows, summary = [], {}
    for backend in args.backends.split(","):
        ratios = {m: [] for m in METHODS if m != "full"}
        for round_ in range(args.rounds):
            print(f"{backend}, round {round_ + 1}", flush=True)
            results = {m: _run_case(backend, m, args.batch_size, args.steps, args.warmup) for m in METHODS}
            for method, result in results.items():
                rows.append({"backend": backend, "round": round_ + 1, "method": method, **result})
                if method != "full":
                    ratios[method].append(results["full"]["seconds"] / result["seconds"])
        summary[backend] = {
            m: {"speedup_median": statistics.median(v), "speedup_range": [min(v), max(v)]} for m, v in ratios.items()
        }
        for method, value in summary[backend].items():
            print(f"{backend}: {method} trains {value['speedup_median']:.2f}x as fast as full "
                  f"(range {value['speedup_range'][0]:.2f}-{value['speedup_range'][1]:.2f})", flush=True)
        # After each backend, so that a long run interrupted keeps what it measured.
        with open(args.output, "w") as f:
            json.dump({"batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds, "runs": rows,
                       "summary": summary}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
