"""Running a numpy function on the host from inside a model's (compiled) step.

Why backend code here: DETR's Hungarian matching is exact and fastest in
scipy (`benchmarks/bench_matching.py`: 0.1-3 ms per batch against 1-1000 ms
for the pure `keras.ops` solver), but `model.fit` traces the loss into a
graph. Each backend has its own escape hatch to call back into Python with
concrete arrays: `jax.pure_callback` under `jax.jit`, `tf.numpy_function`
under `tf.function`, and plain eager conversion for torch (whose Keras
trainer runs eagerly). keras.ops has no such op, so this module holds the
three. The callback's result must not need a gradient (matching returns
integer indices).
"""

import contextlib

import keras
import numpy as np


def host_call(function, inputs, output_shape, output_dtype):
    """Calls `function(*numpy_inputs) -> numpy array` from traced or eager code.

    Args:
        function: takes numpy arrays, returns one numpy array of `output_dtype`.
        inputs: list of backend tensors (gradients are stopped).
        output_shape: tuple of ints; may hold None for a dynamic batch on
            TensorFlow (jax needs it fully static, which it is under `jit`).
        output_dtype: numpy dtype name of the result.

    Returns:
        A backend tensor.
    """
    backend = keras.backend.backend()
    inputs = [keras.ops.stop_gradient(x) for x in inputs]
    if backend == "jax":
        import jax

        spec = jax.ShapeDtypeStruct(tuple(output_shape), np.dtype(output_dtype))
        return jax.pure_callback(
            lambda *args: np.asarray(function(*[np.asarray(a) for a in args]), dtype=output_dtype),
            spec,
            *inputs,
            vmap_method="sequential",
        )
    if backend == "tensorflow":
        import tensorflow as tf

        result = tf.numpy_function(
            lambda *args: np.asarray(function(*args), dtype=output_dtype), inputs, tf.as_dtype(output_dtype),
            stateful=False,
        )
        result.set_shape(output_shape)
        return result
    if backend == "torch":
        import torch

        device = inputs[0].device
        arrays = [x.detach().cpu().numpy() for x in inputs]
        return torch.as_tensor(np.asarray(function(*arrays), dtype=output_dtype), device=device)
    return np.asarray(function(*[np.asarray(x) for x in inputs]), dtype=output_dtype)


def callback_compiles():
    """Whether `host_call` works inside an XLA-compiled step on this backend.

    jax's `pure_callback` does; `tf.numpy_function` does not run under XLA
    (`jit_compile=True`), so a TensorFlow model that calls back must not be
    XLA-compiled (Keras only compiles TensorFlow with XLA on GPU/TPU).
    """
    return keras.backend.backend() != "tensorflow"


def host_check(function, inputs):
    """Runs `function(*numpy_inputs)`, which raises on bad values, from traced
    or eager code, and returns an int32 scalar 0.

    The caller must use the result (add it to a loss) so that no graph
    compiler drops the call. The result is an integer so that no gradient is
    asked of it (jax's `pure_callback` has no JVP). Under `jax.jit` the
    exception reaches the caller as a `JaxRuntimeError` whose text holds the
    message; `host_error_message` recovers it.
    """

    def run(*arrays):
        try:
            function(*arrays)
        except (ValueError, TypeError) as error:
            raise type(error)(HOST_CHECK_MARKER + str(error)) from None
        return np.zeros((), "int32")

    return host_call(run, inputs, (), "int32")


HOST_CHECK_MARKER = "keras_vit check: "


def host_error_message(error):
    """The message of a `host_check` failure wrapped by a backend runtime
    error (jax's `JaxRuntimeError`, TensorFlow's `InvalidArgumentError`), or
    None for any other error."""
    text = str(error)
    start = text.rfind(HOST_CHECK_MARKER)
    if start < 0:
        return None
    message = text[start + len(HOST_CHECK_MARKER):]
    for end in ("\n\n", "\n\t ", "\n  "):
        message = message.split(end)[0]
    return message.strip()


@contextlib.contextmanager
def host_check_errors():
    """A failed `host_check` surfaces as a plain ValueError, not wrapped in
    the backend's runtime error (jax's `JaxRuntimeError`, TensorFlow's
    `InvalidArgumentError`) with a traceback of the callback machinery."""
    try:
        yield
    except Exception as error:
        message = host_error_message(error)
        if message is None:
            raise
        raise ValueError(message) from None
