"""The shared base of keras_vit task models (in the spirit of keras-hub's `Task`)."""

import keras
import numpy as np
from keras import tree

from keras_vit.backend.host_callback import host_check_errors
from keras_vit.backend.jax_state import variables_kept_on_failure
from keras_vit.backend.jax_state import weights_lost as _weights_lost
from keras_vit.presets.registry import ClassPresets


class Task:
    """Mixed into every task model (`class ViT(Task, keras.Model)`).

    A task is a backbone plus a head, with optional `preprocessor`: a layer
    that maps raw inputs (for photographs, pixels in [0, 255] of any dtype and
    size, as the preset's preprocessor documents) to what the network takes.
    It gives every task:

    - `from_preset(preset, load_weights=True, **kwargs)`: names, preset
      directories of this class, checkpoint files and `hf://org/name`, through
      one loader for every family;
    - `save_to_preset(directory)`: the same directory format for every family;
    - `presets`: `{name: description}` of the built-in presets;
    - **raw inputs in `fit`, `evaluate` and `predict`** (and the `*_on_batch`
      methods): the preprocessor runs inside the compiled step, so a preset
      given photographs scores as it was trained. Calling the model directly,
      `model(x)`, takes already preprocessed tensors, and
      `model.preprocessor(images)` is the mapping, for a custom pipeline.

    It is a mixin rather than a `keras.Model` subclass because Keras turns a
    model's `keras.Model` base into `Functional` when it is built functionally
    (ViT), which must not change the base of subclassed tasks (DETR).
    """

    presets = ClassPresets()

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Builds the task from a preset name, a preset directory, a checkpoint
        file or `hf://org/name`.

        Args:
            preset: a name from `cls.presets` / `keras_vit.list_presets()`, a
                directory written by `save_to_preset`, a checkpoint file of a
                format the family converts, or `hf://org/name`.
            load_weights: bool; False builds the architecture with fresh weights.
            **kwargs: the family's arguments (see the task's own
                `from_preset`); unknown ones raise a `ValueError`.
        """
        from keras_vit.presets.loader import load_task

        return load_task(cls, preset, load_weights=load_weights, **kwargs)

    def save_to_preset(self, directory, metadata=None):
        """Writes a preset directory (config, weights, preprocessor, metadata),
        atomically; `type(self).from_preset(directory)` rebuilds the same model
        on any backend.

        Args:
            directory: path; an existing preset there is replaced whole.
            metadata: optional dict of JSON-serializable entries for
                `metadata.json`.
        """
        from keras_vit.presets.preset_directory import write_preset

        return write_preset(self, directory, metadata=metadata)

    # ------------------------------------------------------ preprocessing

    def check_raw_inputs(self, x):
        """Checks raw inputs given to `fit`/`evaluate`/`predict`, before any
        Keras step runs (a failure inside a JAX step would leave the model's
        variables detached). Subclasses add their own checks."""
        shape = getattr(x, "shape", None)
        if shape is not None and len(shape) >= 1 and shape[0] == 0:
            raise ValueError(f"The input batch is empty (shape {tuple(shape)}). Pass at least one image.")

    def _check_weights_present(self, training=False):
        """After a failed JAX `fit`, says how to get the weights back."""
        if getattr(self, "_keras_vit_weights_lost", False) and _weights_lost(self, optimizer=training):
            raise RuntimeError(
                f"This {type(self).__name__} lost its weights when an earlier fit() failed inside a training step "
                "(on JAX the step owns the weights' memory while it runs). Load them again: "
                "from_preset(...), load_weights(...), or the run's backup/ checkpoint"
                + (", and compile() again for a new optimizer state." if training else ".")
            )

    def _loss_targets(self, y):
        """Maps targets as the task's losses take them (e.g. one label map to
        both heads of a segmenter). Identity by default."""
        return y

    def _maps_targets(self):
        return type(self)._loss_targets is not Task._loss_targets

    def _preprocess_batch(self, data):
        preprocessor = getattr(self, "preprocessor", None)
        if preprocessor is None and not self._maps_targets():
            return data
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if preprocessor is not None:
            x = preprocessor(x)
        return keras.utils.pack_x_y_sample_weight(x, self._loss_targets(y), sample_weight)

    # The data batch is the last positional argument of every backend's step
    # (JAX passes the state first).
    def train_step(self, *args):
        *state, data = args
        return super().train_step(*state, self._preprocess_batch(data))

    def test_step(self, *args):
        *state, data = args
        return super().test_step(*state, self._preprocess_batch(data))

    def predict_step(self, *args):
        *state, data = args
        return super().predict_step(*state, self._preprocess_batch(data))

    def _symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds the compiled metrics on one symbolic batch of the data
        # before the first step; with a preprocessor that batch is raw, so it
        # is mapped as the step will map it. (Private Keras hook, keras>=3.15;
        # tests/models/test_task.py fails if it changes.)
        preprocessor = getattr(self, "preprocessor", None)
        if preprocessor is None and not self._maps_targets():
            return super()._symbolic_build(iterator=iterator, data_batch=data_batch)
        if data_batch is None:
            for _, _, data_or_iterator in iterator:
                if isinstance(data_or_iterator, (list, tuple)):
                    data_batch = data_or_iterator[0]
                else:
                    data_batch = next(data_or_iterator)
                break
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data_batch)
        if preprocessor is not None:
            x = tree.map_structure(lambda v: keras.KerasTensor(v.shape, keras.backend.standardize_dtype(v.dtype)), x)
            x = preprocessor.compute_output_spec(x)
        return super()._symbolic_build(
            data_batch=keras.utils.pack_x_y_sample_weight(x, self._loss_targets(y), sample_weight)
        )

    def compile(self, *args, **kwargs):
        # Keras wraps the optimizer in a LossScaleOptimizer only when the
        # model's own policy is mixed_float16; a functionally built task
        # (ViT, DPT, Segmenter) keeps the float32 policy of its outer
        # Functional, with float16 inside. The wrap is decided here from the
        # layers, so every task scales its loss under mixed_float16.
        args = list(args)
        optimizer = args[0] if args else kwargs.get("optimizer", "rmsprop")
        if kwargs.get("auto_scale_loss", True) and _computes_in_float16(self) and optimizer is not None:
            optimizer = keras.optimizers.get(optimizer)
            if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            if args:
                args[0] = optimizer
            else:
                kwargs["optimizer"] = optimizer
        return super().compile(*args, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, *args, **kwargs):
        self._check_weights_present(training=True)
        self.check_raw_inputs(x)
        with host_check_errors(), variables_kept_on_failure(self, training=True):
            history = super().fit(x, y, batch_size, epochs, verbose, callbacks, *args, **kwargs)
            # JAX dispatches steps asynchronously: an error raised inside the
            # last steps (a failed check) surfaces only when their results are
            # read. Reading the step counter here makes it surface from fit().
            optimizer = getattr(self, "optimizer", None)
            if optimizer is not None:
                keras.ops.convert_to_numpy(optimizer.iterations)
            return history

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_weights_present()
        self.check_raw_inputs(x)
        with host_check_errors(), variables_kept_on_failure(self):
            return super().evaluate(x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        with host_check_errors():
            return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        with host_check_errors():
            return super().test_on_batch(x, y, *args, **kwargs)

    def export(self, filepath, format="tf_saved_model", verbose=None, image_size=None, batch_size=None, verify=True):
        """Writes the model for serving: a TensorFlow SavedModel
        (`format="tf_saved_model"`) or an ONNX file (`format="onnx"`) that
        takes raw images, as `predict` does, with a dynamic batch (see
        `keras_vit.export`: inputs, outputs, what each backend can write).

        Args:
            filepath: the directory (SavedModel) or file (ONNX) to write,
                atomically.
            format: `"tf_saved_model"` or `"onnx"`.
            verbose: Keras' export message.
            image_size: `(H, W)` to export at: required for DETR, otherwise
                the preprocessor's size.
            batch_size: None (the default) for a dynamic batch, or a fixed
                batch size.
            verify: run the artifact outside Keras (onnxruntime;
                TensorFlow for a SavedModel) and keep it only if it equals
                the model within 1e-4.
        """
        from keras_vit.export import export_task

        return export_task(
            self, filepath, format=format, image_size=image_size, batch_size=batch_size, verify=verify,
            verbose=verbose,
        )

    def predict(self, x, batch_size=None, *args, **kwargs):
        self._check_weights_present()
        self.check_raw_inputs(x)
        x, batch_size, count = _whole_batches(x, batch_size)
        with variables_kept_on_failure(self):
            outputs = super().predict(x, batch_size, *args, **kwargs)
        if count is not None:
            outputs = tree.map_structure(lambda a: a[:count], outputs)
        return outputs


def _whole_batches(x, batch_size):
    """Under a `keras.distribution` data layout (JAX data or model
    parallelism), every batch is split evenly over the batch axis, so a
    partial batch cannot run. For numpy inputs the batch size is rounded up to
    a multiple of the replicas and the inputs padded (repeating the last
    sample) to whole batches; predictions are per sample, so this changes no
    result. Returns (x, batch_size, the true count or None when nothing was
    padded)."""
    distribution = keras.distribution.distribution()
    arrays = tree.flatten(x)
    if distribution is None or not arrays or not all(isinstance(a, np.ndarray) for a in arrays):
        return x, batch_size, None
    mesh = distribution.device_mesh
    replicas = mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]
    batch = 32 if batch_size is None else int(batch_size)
    batch = -(-batch // replicas) * replicas
    count = len(arrays[0])
    total = -(-count // batch) * batch
    if total == count:
        return x, batch, None
    return tree.map_structure(lambda a: np.concatenate([a, np.repeat(a[-1:], total - count, axis=0)]), x), batch, count


def _computes_in_float16(model):
    """Whether any layer of `model` runs under the mixed_float16 policy."""
    return any(
        getattr(layer.dtype_policy, "name", None) == "mixed_float16"
        for layer in model._flatten_layers(include_self=True, recursive=True)
    )
