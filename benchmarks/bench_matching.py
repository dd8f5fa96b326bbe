"""Hungarian matching cost: scipy on the host vs the pure keras.ops path.

    KERAS_BACKEND=jax python benchmarks/bench_matching.py

Batch 16 and 64, 100 queries, 10 and 50 targets (a third of them padding),
best of 5 after a warm-up; the ops path is compiled (jax.jit / tf.function)
where the backend compiles.
"""

import json

import keras
import numpy as np

from bench_vit import _best_time  # same folder: benchmarks/ is on sys.path when run as a script
from keras_vit.ops.linear_assignment import linear_sum_assignment_host
from keras_vit.ops.linear_assignment import linear_sum_assignment_ops


def compiled_ops():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(linear_sum_assignment_ops)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(linear_sum_assignment_ops)
    return linear_sum_assignment_ops


def best_ms(fn, repeats=5):
    best, _ = _best_time(fn, repeats, warmup=1)
    return 1000 * best


def main():
    ops_fn = compiled_ops()
    rows = []
    for batch in (16, 64):
        for targets in (10, 50):
            rng = np.random.default_rng(0)
            cost = rng.uniform(size=(batch, 100, targets)).astype("float32")
            mask = rng.uniform(size=(batch, targets)) > 0.33
            host = best_ms(lambda: linear_sum_assignment_host(cost, mask))
            graph = best_ms(lambda: keras.ops.convert_to_numpy(ops_fn(cost, mask)), repeats=3)
            rows.append({"backend": keras.backend.backend(), "batch": batch, "queries": 100,
                         "targets": targets, "host_ms": round(host, 2), "ops_ms": round(graph, 2)})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
