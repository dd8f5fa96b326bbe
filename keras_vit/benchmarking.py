"""Throughput of a task model on this machine: what `keras-vit benchmark` runs.

Like timm's `benchmark.py`: random inputs at the model's size, a few warm-up
steps (compilation), then timed steps; the median step gives images/s.
Inference is `predict_on_batch` on raw [0, 255] images (the preprocessor
included); training is `train_on_batch` with the task's default `compile()`
(optimizer, loss and metrics) on random targets of the task's kind. The
peak resident memory of the process is reported too. For comparisons
against keras-hub, timm and transformers on the same work, see
`benchmarks/`.
"""

import resource
import time

import keras
import numpy as np


def _inputs(model, kind, batch_size, image_size, rng):
    if kind == "detection":
        if image_size is None:
            raise ValueError("DETR takes any image size: pass image_size=(height, width), e.g. (800, 1088).")
        height, width = image_size
    elif image_size is not None:
        height, width = image_size
    elif model.preprocessor is not None:
        height, width = model.preprocessor.image_size
    else:  # no preprocessor: the network's own input size
        height, width = model.backbone.input_shape[1:3]
        if height is None or width is None:
            raise ValueError(
                f"This {type(model).__name__} takes any image size and has no preprocessor stating one: pass "
                "image_size=(height, width) (keras-vit benchmark --image-size H W)."
            )
    channels = model.backbone.input_shape[-1] or 3
    return rng.uniform(0, 255, (batch_size, height, width, channels)).astype("float32")


def _targets(model, kind, images, rng):
    batch = len(images)
    if kind == "classification":
        return rng.integers(0, model.num_classes, (batch,)).astype("int32")
    if kind == "detection":
        centres = rng.uniform(0.3, 0.7, (batch, 2, 2))
        sizes = rng.uniform(0.1, 0.3, (batch, 2, 2))
        return {
            "boxes": np.concatenate([centres, sizes], -1).astype("float32"),
            "labels": rng.integers(0, model.num_classes, (batch, 2)).astype("int32"),
        }
    outputs = model.predict_on_batch(images[:1])
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    spatial = tuple(logits.shape[1:3])
    if kind == "depth":
        return rng.uniform(0.5, 10.0, (batch, *spatial)).astype("float32")
    return rng.integers(0, model.num_classes, (batch, *spatial)).astype("int32")


def _timed(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def benchmark(model, batch_size=8, steps=10, warmup=2, image_size=None, train=True, seed=0, verbose=True):
    """Inference (and training) images/s of `model` on random inputs.

    Args:
        model: a keras_vit task (ViT, DETR, DPT, Segmenter).
        batch_size: images per step.
        steps: timed steps (the median is reported).
        warmup: untimed steps first (compilation).
        image_size: `(H, W)`: required for DETR, otherwise the preprocessor's size.
        train: also time `train_on_batch` with the task's default `compile()`.
        seed: the random inputs' seed.
        verbose: print each figure as it is measured.

    Returns:
        dict: `backend`, `model`, `batch_size`, `image_size`, `infer_images_per_s`,
        `infer_step_s`, (`train_images_per_s`, `train_step_s`), `peak_memory_mb`.
    """
    from keras_vit.prediction import task_kind
    from keras_vit.utils.validation import check_pair
    from keras_vit.utils.validation import check_positive_int

    kind = task_kind(model)
    batch_size = check_positive_int("batch_size", batch_size)
    steps = check_positive_int("steps", steps)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0. Received: warmup={warmup!r}")
    image_size = None if image_size is None else check_pair("image_size", image_size)
    rng = np.random.default_rng(seed)
    images = _inputs(model, kind, batch_size, image_size, rng)
    results = {
        "backend": keras.backend.backend(), "model": type(model).__name__, "task": kind,
        "parameters": int(model.count_params()), "batch_size": batch_size, "image_size": list(images.shape[1:3]),
    }
    x = {"images": images} if kind == "detection" else images
    step = _timed(lambda: keras.tree.map_structure(np.asarray, model.predict_on_batch(x)), warmup, steps)
    results.update(infer_step_s=step, infer_images_per_s=batch_size / step)
    if verbose:
        print(f"inference: {batch_size / step:.2f} images/s ({step * 1000:.1f} ms per batch of {batch_size})", flush=True)
    if train:
        y = _targets(model, kind, images, rng)
        model.compile()  # the task's default optimizer, loss and metrics
        step = _timed(lambda: model.train_on_batch(x, y), warmup, steps)
        results.update(train_step_s=step, train_images_per_s=batch_size / step)
        if verbose:
            print(f"training:  {batch_size / step:.2f} images/s ({step * 1000:.1f} ms per step)", flush=True)
    results["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results
