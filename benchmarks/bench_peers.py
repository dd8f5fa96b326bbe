"""keras_vit against its peers on the same work, in one run: ratios, not absolute figures.

    python benchmarks/bench_peers.py                       # ViT + DETR + scaling, all backends
    python benchmarks/bench_peers.py --suite vit --rounds 3
    python benchmarks/bench_peers.py --suite detr           # DETR-R50 vs transformers (torch)
    python benchmarks/bench_peers.py --suite scaling        # ViT-B/16 forward at 224, 384, 512

The peers are reference packages of this benchmark, not of the library: keras-hub
(same Keras backend) and timm (PyTorch eager) for ViT, transformers'
DetrForObjectDetection for DETR. keras-hub pins the full `tensorflow` wheel,
which would replace `tensorflow-cpu`, so install it without its dependencies:

    pip install --no-deps keras-hub kagglehub kagglesdk

Every case runs in its own process (Keras reads KERAS_BACKEND once; a fresh
process also keeps one case's allocator and thread pools from the next), and
the cases of a round are interleaved (keras_vit, keras-hub, timm, keras_vit, ...)
so that load from other work on a shared machine falls on all of them alike.
On TensorFlow a fourth case, keras_vit_xla, runs keras_vit compiled with
`jit_compile=True` (Keras turns XLA off for TensorFlow on CPU-only machines). A
case reports the median of its timed steps after warm-up; a ratio is taken
within each round and the median over rounds is printed, with its range.

Works:
- vit_ti_train: ViT-Ti/16 training step, batch 16, 224 x 224, AdamW +
  cross-entropy (`train_on_batch`; timm: one eager forward/backward/step).
- vit_b_forward: ViT-B/16 forward, batch 8, 224 x 224, float32
  (`predict_on_batch`; timm: `torch.inference_mode`), also as a fraction of
  the machine's float32 matmul peak, measured in the same run (the best of
  numpy and each backend on a 4096 x 4096 product, benchmarks/bench_vit.py).
- vit_b_forward_<size>: ViT-B/16 forward, batch 1, at 224, 384 or 512, whose
  cost is checked against the token-count law: time grows as the FLOPs of
  N = (size / 16)^2 + 1 tokens (linear layers ~ N, attention ~ N^2).
- detr_forward: DETR-R50 forward, batch 1, 800 x 1066 (torch).
- detr_train: DETR-R50 training step, batch 2, 384 x 384, 30 targets per image,
  set loss with Hungarian matching (torch).
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
from bench_vit import _run_worker as _run_matmul_worker  # noqa: E402
from bench_vit import vit_forward_flops  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
SIZES = (224, 384, 512)


def _median_time(fn, steps, warmup):
    """Median seconds of `steps` calls after `warmup` calls."""
    return _best_time(fn, steps, warmup)[1]


# ----------------------------------------------------------------------------- workers


def _vit_config(work):
    """(name, batch, image_size, training) of a ViT work."""
    if work == "vit_ti_train":
        return "ti", 16, 224, True
    if work == "vit_b_forward":
        return "b", 8, 224, False
    if work.startswith("vit_b_forward_"):
        return "b", 1, int(work.rsplit("_", 1)[1]), False
    raise ValueError(f"unknown work {work!r}")


VIT_SIZES = {"ti": (192, 3, 768), "b": (768, 12, 3072)}  # width, heads, MLP; 12 blocks, patch 16


def _keras_vit_model(size, image_size):
    import keras_vit

    preset = {"ti": "vit_ti16", "b": "vit_b16"}[size]
    return keras_vit.ViT.from_preset(preset, load_weights=False, image_size=image_size)


def _keras_hub_model(size, image_size):
    import keras_hub

    width, heads, mlp = VIT_SIZES[size]
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3), patch_size=16, num_layers=12, num_heads=heads,
        hidden_dim=width, mlp_dim=mlp,
    )
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=1000, preprocessor=None)


def keras_step(impl, work):
    """`(step, batch, model)`: one call of a ViT work for keras_vit, keras_vit_xla
    or keras_hub (also what benchmarks/profile_step.py profiles)."""
    import keras
    import numpy as np

    size, batch, image_size, training = _vit_config(work)
    model = (_keras_hub_model if impl == "keras_hub" else _keras_vit_model)(size, image_size)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, image_size, image_size, 3)).astype("float32")
    # keras_vit_xla: the same model with jit_compile=True. Keras' "auto" turns
    # XLA off for TensorFlow on a machine without GPU (Trainer._resolve_auto_jit_compile).
    jit_compile = True if impl == "keras_vit_xla" else "auto"
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    if training:
        y = rng.integers(0, 1000, size=(batch,))
        return (lambda: model.train_on_batch(x, y)), batch, model
    return (lambda: model.predict_on_batch(x)), batch, model


def keras_worker(impl, work, steps, warmup):
    step, batch, model = keras_step(impl, work)
    seconds = _median_time(step, steps, warmup)
    return {"seconds": seconds, "images_per_s": batch / seconds, "params": model.count_params()}


def _torchvision_shim():
    """pip's only torchvision for torch 2.13.0 is a CUDA build whose operators do
    not load on the CPU wheel; the test suite's shim declares them so that timm
    and transformers import (tests/torchvision_shim.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from torchvision_shim import declare_torchvision_ops

    declare_torchvision_ops()


def timm_worker(work, steps, warmup):
    _torchvision_shim()
    import timm
    import torch

    size, batch, image_size, training = _vit_config(work)
    name = {"ti": "vit_tiny_patch16_224", "b": "vit_base_patch16_224"}[size]
    model = timm.create_model(name, pretrained=False, img_size=image_size)
    x = torch.randn(batch, 3, image_size, image_size)
    if training:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        y = torch.randint(0, 1000, (batch,))
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            return float(loss)

        seconds = _median_time(step, steps, warmup)
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                return model(x).numpy()

        seconds = _median_time(step, steps, warmup)
    params = sum(p.numel() for p in model.parameters())
    return {"seconds": seconds, "images_per_s": batch / seconds, "params": params}


def _detr_targets(batch, targets, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 91, (batch, targets)).astype("int32")
    centers = rng.uniform(0.3, 0.7, (batch, targets, 2))
    sizes = rng.uniform(0.05, 0.3, (batch, targets, 2))
    return labels, np.concatenate([centers, sizes], -1).astype("float32")


def detr_worker(impl, work, steps, warmup):
    import numpy as np

    training = work == "detr_train"
    batch, height, width = (2, 384, 384) if training else (1, 800, 1066)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")
    labels, boxes = _detr_targets(batch, 30)
    if impl == "keras_vit":
        import keras

        from keras_vit import DETR
        from keras_vit import ResNetBackbone

        model = DETR(ResNetBackbone(50), num_classes=91, bounding_box_format="rel_center_xywh")
        if training:
            model.compile(keras.optimizers.AdamW(1e-4, global_clipnorm=0.1))
            y = {"labels": labels, "boxes": boxes}
            seconds = _median_time(lambda: model.train_on_batch(images, y), steps, warmup)
        else:
            seconds = _median_time(lambda: model.predict_on_batch(images), steps, warmup)
        params = model.count_params()
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    else:
        _torchvision_shim()
        import torch
        import transformers

        config = transformers.DetrConfig(use_pretrained_backbone=False, num_labels=91)
        model = transformers.DetrForObjectDetection(config)
        mean = np.array([0.485, 0.456, 0.406], "float32") * 255
        std = np.array([0.229, 0.224, 0.225], "float32") * 255
        pixels = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())
        mask = torch.ones(batch, height, width, dtype=torch.long)
        if training:
            model.train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            targets = [
                {"class_labels": torch.from_numpy(labels[i]).long(), "boxes": torch.from_numpy(boxes[i])}
                for i in range(batch)
            ]

            def step():
                optimizer.zero_grad(set_to_none=True)
                loss = model(pixel_values=pixels, pixel_mask=mask, labels=targets).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                optimizer.step()
                return float(loss)

        else:
            model.eval()

            def step():
                with torch.inference_mode():
                    return model(pixel_values=pixels, pixel_mask=mask).logits.numpy()

        seconds = _median_time(step, steps, warmup)
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"seconds": seconds, "images_per_s": batch / seconds, "params": params, "trainable_params": trainable}


def worker(impl, work, steps, warmup):
    if work.startswith("detr"):
        result = detr_worker(impl, work, steps, warmup)
    elif impl == "timm":
        result = timm_worker(work, steps, warmup)
    else:
        result = keras_worker(impl, work, steps, warmup)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# ----------------------------------------------------------------------------- driver


def _run_case(backend, impl, work, steps, warmup):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, __file__, "--worker", impl, work, "--steps", str(steps), "--warmup", str(warmup)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} {work} on {backend} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {backend:10s} {impl:12s} {work:18s} {result['images_per_s']:8.3f} img/s "
        f"({1000 * result['seconds']:.0f} ms/step, peak RSS {result['peak_rss_mib']:.0f} MiB"
        + (f", {result['trainable_params']:,} trainable" if work == "detr_train" else "") + ")",
        flush=True,
    )
    return result


def _cases(suite, backends):
    """[(group, backend, [(impl, work), ...])]: the cases of a group are interleaved within a round."""
    groups = []
    if suite in ("vit", "all"):
        for work in ("vit_ti_train", "vit_b_forward"):
            for backend in backends:
                impls = ["keras_vit", "keras_hub"] + {"torch": ["timm"], "tensorflow": ["keras_vit_xla"]}.get(backend, [])
                groups.append((work, backend, [(impl, work) for impl in impls]))
    if suite in ("scaling", "all"):
        for backend in backends:
            impls = ["keras_vit", "keras_hub"] + (["timm"] if backend == "torch" else [])
            groups.append(("scaling", backend, [(impl, f"vit_b_forward_{s}") for impl in impls for s in SIZES]))
    if suite in ("detr", "all") and "torch" in backends:
        for work in ("detr_forward", "detr_train"):
            groups.append((work, "torch", [("keras_vit", work), ("transformers", work)]))
    return groups


def _summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _keras_vit_by_backend(groups, work):
    """{backend: keras_vit's median images/s} for one work, from the measured groups."""
    return {
        group.split(":")[1]: statistics.median(entry[f"keras_vit:{work}"])
        for group, entry in groups.items()
        if group.startswith(f"{work}:")
    }


def _scaling_law(rows):
    """Measured time at each size relative to 224, against the FLOP ratio of the token count."""
    law = {}
    for size in SIZES:
        law[size] = vit_forward_flops(image_size=size) / vit_forward_flops(image_size=224)
    out = {}
    for impl in sorted({impl for impl, _ in rows}):
        base = statistics.median(rows[(impl, 224)])
        out[impl] = {
            str(size): {
                "time_ratio": statistics.median(rows[(impl, size)]) / base,
                "flop_ratio": law[size],
                "tokens": (size // 16) ** 2 + 1,
            }
            for size in SIZES
        }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "WORK"), help=argparse.SUPPRESS)
    parser.add_argument("--suite", choices=["all", "vit", "detr", "scaling"], default="all")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", help="JSON file (default: benchmarks/results_peers_<suite>.json)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.warmup)))
        return
    args.output = args.output or os.path.join(HERE, f"results_peers_{args.suite}.json")
    backends = args.backends.split(",")
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")

    results = {"nproc": os.cpu_count(), "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "groups": {}}
    if args.suite in ("vit", "all"):
        # The machine's float32 matmul peak in this run, for the forward's fraction of it.
        peaks = {}
        for framework in ("numpy", *backends):
            peaks[framework] = _run_matmul_worker(["--worker", "matmul", "--framework", framework], {})["best_gflops"]
            print(f"matmul peak {framework:10s} {peaks[framework]:7.1f} GFLOP/s (4096 x 4096, float32)", flush=True)
        results["matmul_gflops"] = peaks
    for group, backend, cases in _cases(args.suite, backends):
        print(f"{group} on {backend}", flush=True)
        measured = {case: [] for case in cases}
        for _ in range(args.rounds):
            for impl, work in cases:
                steps = args.steps if not work.startswith("detr") else max(2, args.steps // 2)
                measured[(impl, work)].append(_run_case(backend, impl, work, steps, args.warmup)["images_per_s"])
        entry = {f"{impl}:{work}": values for (impl, work), values in measured.items()}
        if group == "scaling":
            rows = {(impl, int(work.rsplit("_", 1)[1])): [1 / v for v in values] for (impl, work), values in measured.items()}
            entry["law"] = _scaling_law(rows)
            for impl, sizes in entry["law"].items():
                cells = ", ".join(f"{s}: {r['time_ratio']:.2f}x (FLOPs {r['flop_ratio']:.2f}x)" for s, r in sizes.items())
                print(f"  {impl:12s} time vs 224 -> {cells}", flush=True)
        else:
            ours = measured[cases[0]]
            for impl, work in cases[1:]:
                ratios = [a / b for a, b in zip(ours, measured[(impl, work)])]
                entry[f"keras_vit/{impl}"] = _summary(ratios)
                s = entry[f"keras_vit/{impl}"]
                print(f"  keras_vit / {impl}: {s['median']:.2f}x (rounds {s['min']:.2f}-{s['max']:.2f})", flush=True)
        results["groups"][f"{group}:{backend}"] = entry
    forward = _keras_vit_by_backend(results["groups"], "vit_b_forward")
    if forward and "matmul_gflops" in results:
        peak = max(results["matmul_gflops"].values())
        fastest = max(forward, key=forward.get)
        gflops = forward[fastest] * vit_forward_flops() / 1e9
        results["vit_b_forward_fraction_of_peak"] = {"backend": fastest, "gflops": gflops, "fraction": gflops / peak}
        print(f"keras_vit ViT-B/16 forward on the fastest backend ({fastest}): {gflops:.0f} GFLOP/s, "
              f"{100 * gflops / peak:.0f}% of the matmul peak ({peak:.0f} GFLOP/s)", flush=True)
    # Across backends: keras_vit's training step on each, relative to the fastest.
    train = _keras_vit_by_backend(results["groups"], "vit_ti_train")
    if len(train) > 1:
        fastest = max(train, key=train.get)
        results["vit_ti_train_vs_fastest_backend"] = {b: v / train[fastest] for b, v in train.items()}
        cells = ", ".join(f"{b} {v / train[fastest]:.2f}x" for b, v in train.items())
        print(f"keras_vit ViT-Ti training step against the fastest backend ({fastest}): {cells}", flush=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
