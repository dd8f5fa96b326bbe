"""Exact (erf) GELU that every export path can carry.

Why backend-specific: on TensorFlow, `keras.activations.gelu(x,
approximate=False)` is `tf.nn.gelu`, which computes `0.5 x erfc(-x / sqrt 2)`.
tf2onnx turns `Erfc` into an ONNX node that does not exist, and onnxruntime
refuses the whole model as invalid (ERRATA: ship issue). The same function
written with `erf`, `0.5 x (1 + erf(x / sqrt 2))`, converts to ONNX's `Erf`
and costs the same there (tf.nn.gelu is composed of elementwise ops too).
JAX's and torch's own exact GELU export as they are (JAX: `erf` through
jax2tf; torch: a fused kernel, which the composed form would slow down), so
they keep Keras' GELU.
"""

import math

import keras


def gelu(x, approximate=False):
    """`keras.activations.gelu`, with the exact form written with `erf` on TensorFlow."""
    if approximate or keras.backend.backend() != "tensorflow":
        return keras.activations.gelu(x, approximate=approximate)
    return 0.5 * x * (1.0 + keras.ops.erf(x * (1.0 / math.sqrt(2.0))))
