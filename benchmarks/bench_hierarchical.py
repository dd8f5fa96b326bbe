"""Swin-T and MViTv2-T: keras_vit on each backend against timm (PyTorch eager), in one run.

    python benchmarks/bench_hierarchical.py                 # both models, every backend, 1 round
    python benchmarks/bench_hierarchical.py --rounds 3 --models swin_t

Works, at 224 x 224, float32, random weights (nothing downloads):
- forward: batch 4 (`predict_on_batch`; timm: `torch.inference_mode`);
- train: batch 4, AdamW + cross-entropy (`train_on_batch`; timm: one eager
  forward/backward/step).

Every case runs in its own process (Keras reads KERAS_BACKEND once); the
cases of a round are interleaved so that load from other work falls on all
alike. A case reports the median of its timed steps after warm-up; the
printed figures are keras_vit's time over timm's, per round, and their
median. keras-hub's Swin is not a case here: keras-hub pins the full
`tensorflow` wheel and is not in this project's test extras (install it
with `pip install --no-deps keras-hub kagglehub kagglesdk` and add a case).
Results go to benchmarks/results_hierarchical.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMM_NAMES = {"swin_t": "swin_tiny_patch4_window7_224", "mvitv2_t": "mvitv2_tiny"}
BATCH, FORWARD_STEPS, TRAIN_STEPS, WARMUP = 4, 5, 3, 2


def _median_time(step, steps):
    for _ in range(WARMUP):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_keras_vit(name):
    import keras
    import numpy as np

    import keras_vit
    from keras_vit.presets.loader import classifier_class

    model = classifier_class(name).from_preset(name, load_weights=False)
    network = keras.Model(model.inputs, model.outputs)  # the network alone: timm gets preprocessed tensors too
    x = np.random.default_rng(0).normal(size=(BATCH, 224, 224, 3)).astype("float32")
    y = np.arange(BATCH) % 1000
    forward = _median_time(lambda: network.predict_on_batch(x), FORWARD_STEPS)
    network.compile(keras.optimizers.AdamW(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = _median_time(lambda: network.train_on_batch(x, y), TRAIN_STEPS)
    del keras_vit
    return {"forward": forward, "train": train}


def run_timm(name):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from torchvision_shim import declare_torchvision_ops

    declare_torchvision_ops()
    import timm
    import torch

    model = timm.create_model(TIMM_NAMES[name], pretrained=False)
    x = torch.randn(BATCH, 3, 224, 224)
    y = torch.arange(BATCH) % 1000
    model.eval()

    def forward():
        with torch.inference_mode():
            model(x)

    forward_time = _median_time(forward, FORWARD_STEPS)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return {"forward": forward_time, "train": _median_time(train, TRAIN_STEPS)}


def _case(name, framework):
    env = dict(os.environ)
    if framework != "timm":
        env["KERAS_BACKEND"] = framework
    command = [sys.executable, __file__, "--case", name, framework]
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"{name} on {framework} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="swin_t,mvitv2_t")
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, framework = args.case
        print(json.dumps(run_timm(name) if framework == "timm" else run_keras_vit(name)))
        return
    rounds = []
    for _ in range(args.rounds):
        results = {}
        for name in args.models.split(","):
            for framework in ["timm", *args.backends.split(",")]:
                results[f"{name}/{framework}"] = _case(name, framework)
                print(name, framework, results[f"{name}/{framework}"], flush=True)
        rounds.append(results)
    ratios = {}
    for name in args.models.split(","):
        for backend in args.backends.split(","):
            for work in ("forward", "train"):
                values = [r[f"{name}/{backend}"][work] / r[f"{name}/timm"][work] for r in rounds]
                ratios[f"{name} {work} {backend} / timm"] = {
                    "median": round(statistics.median(values), 2), "range": [round(min(values), 2), round(max(values), 2)],
                }
    for key, value in ratios.items():
        print(f"{key}: {value['median']}x")
    summary = {"batch": BATCH, "rounds": args.rounds, "ratios": ratios, "seconds": rounds}
    from keras_vit.utils.files import write_json_atomically

    write_json_atomically(os.path.join(ROOT, "benchmarks", "results_hierarchical.json"), summary)


if __name__ == "__main__":
    main()
