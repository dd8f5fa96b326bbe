"""DETR training-step time and the share of it spent in Hungarian matching.

    KERAS_BACKEND=tensorflow python benchmarks/bench_detr.py

For two models, a `model.fit` step on synthetic data (best of a few steps
after warm-up) with matching on the host (scipy through the backend callback,
the default), and the scipy matching alone on the same shapes (every decoder
layer, batch x 100 queries x targets): the fraction is matching / step.
Also DETR-R50 inference images/s and the process's peak resident memory.
"""

import json
import resource
import time

import keras
import numpy as np

from bench_vit import _best_time  # same folder: benchmarks/ is on sys.path when run as a script
from keras_vit import DETR
from keras_vit import ResNetBackbone
from keras_vit.ops.linear_assignment import linear_sum_assignment_host


def _data(batch, size, targets, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = np.full((batch, targets), -1, "int32")
    boxes = np.zeros((batch, targets, 4), "float32")
    count = targets * 2 // 3
    labels[:, :count] = rng.integers(0, 3, (batch, count))
    boxes[:, :count] = np.concatenate([rng.uniform(0.3, 0.7, (batch, count, 2)), rng.uniform(0.05, 0.3, (batch, count, 2))], -1)
    return images, {"labels": labels, "boxes": boxes}


def step_and_matching(name, model, batch, size, targets, steps=4):
    images, y = _data(batch, size, targets)
    model.compile(keras.optimizers.AdamW(1e-4, global_clipnorm=0.1))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, *args, **kwargs):
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args, **kwargs):
            times.append(time.perf_counter() - self.start)

    model.fit(np.concatenate([images] * (steps + 1)), {k: np.concatenate([v] * (steps + 1)) for k, v in y.items()},
              batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[Timer()])
    step = min(times[1:])
    layers = model.decoder_layers
    rng = np.random.default_rng(1)
    cost = rng.uniform(size=(batch, model.num_queries, targets)).astype("float32")
    mask = y["labels"] >= 0
    match, _ = _best_time(lambda: [linear_sum_assignment_host(cost, mask) for _ in range(layers)], 5, warmup=1)
    row = {
        "backend": keras.backend.backend(), "model": name, "batch": batch, "image_size": size,
        "queries": model.num_queries, "targets": targets, "decoder_layers": layers,
        "step_ms": round(1000 * step, 1), "train_images_per_s": round(batch / step, 2),
        "matching_ms": round(1000 * match, 2), "matching_fraction": round(match / step, 4),
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    rows = []
    small = DETR(
        ResNetBackbone((1, 1, 1, 1), stem_filters=16, stage_filters=(32, 64, 128, 256), dilate_last_stage=True),
        num_classes=3, num_queries=10, hidden_dim=64, num_heads=4, encoder_layers=2, decoder_layers=3, ffn_dim=128,
        bounding_box_format="rel_center_xywh",
    )
    rows.append(step_and_matching("recipe (shapes)", small, 32, 96, 3))
    r50 = DETR(ResNetBackbone(50), num_classes=91, bounding_box_format="rel_center_xywh")
    rows.append(step_and_matching("DETR-R50", r50, 2, 384, 30, steps=2))
    images = np.random.default_rng(0).uniform(0, 255, (2, 384, 384, 3)).astype("float32")
    forward, _ = _best_time(lambda: r50.predict_on_batch(images), 3, warmup=1)
    rows.append({"backend": keras.backend.backend(), "model": "DETR-R50 inference", "batch": 2, "image_size": 384,
                 "images_per_s": round(2 / forward, 2)})
    rows.append({"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
    print(json.dumps(rows[-2:]), flush=True)


if __name__ == "__main__":
    main()
