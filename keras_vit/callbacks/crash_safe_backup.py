"""Resumable training that survives a kill at any moment.

Keras's `BackupAndRestore` overwrites one weights file and one metadata file
in place at every epoch: a process killed while writing them leaves a backup
that every rerun fails on (`OSError: bad object header`, `JSONDecodeError`)
until it is deleted by hand. `CrashSafeBackup` keeps the same contract (a
rerun of the same `fit` continues after the last finished epoch) with:

- **double buffering**: each epoch's checkpoint is a new directory
  `epoch-000007/` holding `model.weights.h5` (weights and optimizer state)
  and `state.json` (the epoch, the per-epoch logs of the whole run, the size
  and sha256 of the weights file, the states of the model's
  `SeedGenerator`s (dropout, stochastic depth: `save_weights` leaves them
  out), torch's global random state on the torch backend, where seedless
  dropout draws from it, and any extra state the caller registers). It is
  written under a unique staging name and renamed into place only when
  complete, and the previous checkpoint is
  removed only after that, so one complete checkpoint exists at every moment;
- **verification on restore**: the newest checkpoint whose `state.json` parses
  and whose weights file has the recorded size and sha256 is restored;
  damaged or half-written ones are reported and removed;
- **the whole run's history**: `history` holds the logs of every epoch,
  including those before the last restart, so results and curves cover the
  whole run;
- **an explicit end**: the backup stays on disk after `fit` until the caller
  has safely stored its final outputs and calls `finish()`.
"""

import hashlib
import json
import math
import os
import re
import shutil
import time

import keras

from keras_vit.backend.torch_rng import get_global_rng_state
from keras_vit.backend.torch_rng import set_global_rng_state
from keras_vit.utils.files import file_lock
from keras_vit.utils.files import remove_leftovers
from keras_vit.utils.files import replace_directory
from keras_vit.utils.files import staging_directory
from keras_vit.utils.files import write_json_atomically

_CHECKPOINT = re.compile(r"^epoch-(\d{6})$")
FORMAT_VERSION = 1


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CrashSafeBackup(keras.callbacks.Callback):
    """Backs up training at the end of every epoch; a rerun resumes.

    Args:
        directory: the backup directory (one per run).
        state: optional dict `name -> object` of extra state to keep with
            each checkpoint; each object has `get_state()` returning
            JSON-serializable data and `set_state(data)` (e.g. a callback's
            own history).
        verbose: print a line when resuming or skipping a damaged checkpoint.
        write: False in the processes of a distributed job other than the
            chief: they restore the checkpoints the chief writes and write
            (or delete) nothing.

    Attributes:
        history: list of dicts, one per finished epoch of the whole run:
            `{"epoch": 1-based, "seconds": wall time of the epoch, **logs}`.
        initial_epoch: the number of epochs already done when `fit` began.

    The model must be built and compiled before `fit`. Exact continuation
    (the resumed run ends with the weights an uninterrupted run would have)
    also needs data whose order depends only on the epoch
    (`keras_vit.data.EpochBatches`).
    """

    def __init__(self, directory, state=None, verbose=1, write=True):
        super().__init__()
        self.directory = os.path.abspath(os.fspath(directory))
        self.state = dict(state or {})
        for name, item in self.state.items():
            if not (hasattr(item, "get_state") and hasattr(item, "set_state")):
                raise TypeError(
                    f"state[{name!r}] must have get_state() and set_state(data). Received: {type(item).__name__}"
                )
        self.verbose = verbose
        # False in every process of a distributed job but the chief: it
        # restores the checkpoints the chief writes, and writes nothing.
        self.write = bool(write)
        self.history = []
        self.initial_epoch = 0
        self._epoch_start = None

    # ---------------------------------------------------------------- disk

    def checkpoints(self):
        """`(epoch, path)` of the checkpoint directories present, newest first."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _CHECKPOINT.match(name)
            if match and os.path.isdir(os.path.join(self.directory, name)):
                found.append((int(match.group(1)), os.path.join(self.directory, name)))
        return sorted(found, reverse=True)

    @staticmethod
    def read_checkpoint(path):
        """The verified `state.json` of a checkpoint directory; raises ValueError if damaged."""
        state_path = os.path.join(path, "state.json")
        weights_path = os.path.join(path, "model.weights.h5")
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f"{state_path} cannot be read ({error})") from None
        if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{state_path} is not a checkpoint state of format {FORMAT_VERSION}")
        try:
            size = os.path.getsize(weights_path)
        except OSError:
            raise ValueError(f"{weights_path} is missing") from None
        if size != state.get("weights_bytes") or _sha256(weights_path) != state.get("weights_sha256"):
            raise ValueError(f"{weights_path} does not match the size and sha256 recorded in state.json")
        return state

    def _write(self, epoch):
        os.makedirs(self.directory, exist_ok=True)
        target = os.path.join(self.directory, f"epoch-{epoch:06d}")
        staging = staging_directory(target)
        try:
            weights_path = os.path.join(staging, "model.weights.h5")
            self.model.save_weights(weights_path)
            state = {
                "format_version": FORMAT_VERSION,
                "epoch": epoch,
                "history": self.history,
                "state": {name: item.get_state() for name, item in self.state.items()},
                "backend_rng": get_global_rng_state(),
                "seed_generators": [[int(x) for x in keras.ops.convert_to_numpy(v)] for v in _seed_states(self.model)],
                "weights_bytes": os.path.getsize(weights_path),
                "weights_sha256": _sha256(weights_path),
                "keras_version": keras.__version__,
                "backend": keras.backend.backend(),
            }
            write_json_atomically(os.path.join(staging, "state.json"), state)
            with file_lock(target):
                replace_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # Only now, with the new checkpoint complete, does the older one go.
        for old_epoch, path in self.checkpoints():
            if old_epoch < epoch:
                shutil.rmtree(path, ignore_errors=True)
        self._remove_leftovers()

    def _remove_leftovers(self):
        """Staging directories of writers that were killed."""
        for name in os.listdir(self.directory):
            if name.startswith(".epoch-"):
                remove_leftovers(os.path.join(self.directory, name.split(".")[1]))

    # -------------------------------------------------------------- restore

    def restore(self):
        """Loads the newest intact checkpoint into the model; returns its epoch (0 if none)."""
        for epoch, path in self.checkpoints():
            try:
                state = self.read_checkpoint(path)
            except ValueError as error:
                if self.verbose:
                    print(f"CrashSafeBackup: skipping a damaged checkpoint: {error}", flush=True)
                if self.write:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            self.model.load_weights(os.path.join(path, "model.weights.h5"))
            self.history = list(state["history"])
            set_global_rng_state(state.get("backend_rng"))
            _restore_seed_states(self.model, state.get("seed_generators"))
            for name, item in self.state.items():
                if name in state["state"]:
                    item.set_state(state["state"][name])
            if self.verbose:
                print(f"CrashSafeBackup: resuming after epoch {epoch} from {path}", flush=True)
            return epoch
        return 0

    # ------------------------------------------------------------ callbacks

    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError(
                "CrashSafeBackup needs a built model before fit() (call it on a batch, or build(input_shape)), "
                "so that a checkpoint can be loaded into it."
            )
        if os.path.isdir(self.directory) and self.write:
            self._remove_leftovers()
        self.history = []
        self.initial_epoch = self.restore()
        if self.initial_epoch:
            # The mechanism Keras's own BackupAndRestore uses: fit() starts
            # at model._initial_epoch when a callback set it in on_train_begin.
            self.model._initial_epoch = self.initial_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": round(time.time() - (self._epoch_start or time.time()), 3)}
        for key, value in (logs or {}).items():
            value = float(value)
            row[key] = value if math.isfinite(value) else None  # strict JSON
        self.history.append(row)
        if self.write:
            self._write(epoch + 1)

    def on_train_end(self, logs=None):
        if getattr(self.model, "_initial_epoch", None) == self.initial_epoch and self.initial_epoch:
            self.model._initial_epoch = None

    def finish(self):
        """Deletes the backup: call once the run's final outputs are safely stored."""
        if self.write and os.path.isdir(self.directory):
            shutil.rmtree(self.directory, ignore_errors=True)


def _seed_states(model):
    """The state variables of every `keras.random.SeedGenerator` of the model's
    layers (dropout, stochastic depth), in layer order. `save_weights` does
    not store them, and a resumed run must draw the masks an uninterrupted
    run would have drawn. (Layers list their generators in the private
    `_seed_generators`; Keras has no public accessor.)"""
    return [
        generator.state
        for layer in model._flatten_layers(include_self=True, recursive=True)
        for generator in getattr(layer, "_seed_generators", [])
    ]


def _restore_seed_states(model, values):
    if values is None:
        return
    variables = _seed_states(model)
    if len(variables) != len(values):
        raise ValueError(
            f"The checkpoint holds {len(values)} random-generator states but the model has {len(variables)}: "
            "it was written by another architecture. Use another backup directory."
        )
    for variable, value in zip(variables, values):
        variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))
