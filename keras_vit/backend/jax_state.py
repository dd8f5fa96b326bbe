"""Keeps a JAX model's variables attached when `fit`/`evaluate`/`predict` fails.

Why backend code here: Keras's JAX trainer detaches every variable's value
(`_purge_model_variables`) when a loop starts and passes the values through
its compiled step functionally; it re-attaches them after the loop
(`jax_state_sync`). When the first training step raises, or any evaluate or
predict step does (a bad target found inside the step, a shape error), the
variables stay detached and every later call fails with `'NoneType' object is
not callable`. JAX arrays are immutable, so holding references to the values
as they were costs no copy; on failure the detached variables get them back.
Other backends never detach values, and this does nothing there.

`fit` is different: its compiled step donates the variables' buffers, so once
a training step has started they are gone and nothing can be put back (or,
when the error surfaces after Keras wrote the step's state back, they hold
arrays that carry the error). When `fit` fails on JAX and values were lost,
the model is marked, and its next call raises a clear error (reload the
weights) instead of JAX's "Array has been deleted".
"""

import contextlib

import keras


class _Guard:
    def __init__(self, model):
        self.model = model
        self.values = None

    def capture(self):
        model = self.model
        variables = list(model.variables)
        if getattr(model, "optimizer", None) is not None:
            variables += list(model.optimizer.variables)
        variables += list(getattr(model, "metrics_variables", []))
        self.values = [(v, v._value) for v in variables]

    def restore(self):
        for variable, value in self.values or ():
            if variable._value is None and value is not None:
                variable._value = value


@contextlib.contextmanager
def variables_kept_on_failure(model, training=False):
    """Context for one `fit` (training=True), `evaluate` or `predict` call."""
    if keras.backend.backend() != "jax":
        yield
        return
    guard = _Guard(model)
    guard.capture()
    try:
        yield
    except BaseException:
        _drain_pending_computations()
        guard.restore()
        if training and weights_lost(model):
            model._keras_vit_weights_lost = True
        raise


def _drain_pending_computations():
    """Waits for computations still in flight after a failed step and drops
    their errors. JAX dispatches steps asynchronously: a step dispatched after
    the one that failed can fail too (the same check), and its error would
    otherwise surface at whatever call next reads a result, such as the
    model's next predict. The first error is the one being raised."""
    import jax

    for array in jax.live_arrays():
        try:
            array.block_until_ready()
        except Exception:  # noqa: BLE001  (the pending step's copy of the error being raised)
            pass


def weights_lost(model, optimizer=False):
    """Whether any of the model's weights (and the optimizer's variables when
    `optimizer`) lost its value (a donated buffer)."""
    variables = list(model.weights)
    if optimizer and getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    return any(_unusable(variable._value) for variable in variables)


def _unusable(value):
    """A value that is gone (a donated buffer) or that holds the failed
    step's error: when the error surfaces only after Keras has written the
    step's (failed) state back into the variables, they hold arrays whose
    every read raises it again."""
    if value is None or (hasattr(value, "is_deleted") and value.is_deleted()):
        return True
    if hasattr(value, "block_until_ready"):
        try:
            value.block_until_ready()
        except Exception:  # noqa: BLE001  (the failed step's error, carried by its output)
            return True
    return False
