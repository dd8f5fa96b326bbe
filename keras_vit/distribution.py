"""One switch for training on many devices, on each backend's own engine.

    plan = keras_vit.distribution.configure("auto")   # before the model is built
    with plan.scope():
        model = build_model(...)
        plan.prepare_model(model)
        model.compile(...)
        model.fit(plan.distribute_dataset(train, global_batch), callbacks=plan.fit_callbacks(), ...)

Modes (`--distribute` in every recipe):
- "none": one device.
- "data": data parallelism. JAX: `keras.distribution.DataParallel` over every
  device (`keras.distribution.initialize()` first when
  `KERAS_DISTRIBUTION_NUM_PROCESSES` says the job spans several hosts).
  TensorFlow: a `tf.distribute` strategy (MirroredStrategy over the GPUs or the
  logical CPUs; TPUStrategy when `TPU_NAME` is set; MultiWorkerMirroredStrategy
  when `TF_CONFIG` lists several workers). torch: the processes `torchrun`
  started, gradients averaged every step (`keras_vit/backend/torch_distributed.py`).
- "model": JAX only: `keras.distribution.ModelParallel` on a (batch, model)
  mesh with a task's `get_layout_map` (`ViTBackbone`'s, which DPT and
  Segmenter use too; `DETR`'s; `ResNetBackbone`'s).
- "auto": "data" when there is more than one device (JAX, TensorFlow) or
  process (torch), else "none".

Batch size and learning rate, decided here once: the recipes' `batch_size` is
the *global* batch of one optimizer step, split evenly over the replicas
(each process of a torch job takes its part), so a run on N devices takes
the same steps, on the same examples, as a run on one, and the learning rate
needs no rescaling. A global batch that does not split evenly is refused.
"""

import contextlib
import os

import keras

MODES = ("auto", "none", "data", "model")


class DistributionPlan:
    """What `configure` decided; see the module docstring.

    Attributes:
        mode: "none", "data" or "model".
        replicas: data-parallel replicas (devices a global batch is split over).
        model_parallel: size of the model axis (1 unless mode is "model").
        process_index / process_count: this process among the job's processes.
        is_chief: whether this process writes checkpoints, presets and figures.
        strategy: the `tf.distribute.Strategy` (TensorFlow), else None. On
            JAX the distribution is Keras's global one,
            `keras.distribution.distribution()`.
    """

    def __init__(self, mode, replicas=1, model_parallel=1, process_index=0, process_count=1,
                 is_chief=True, strategy=None, engine="none"):
        self.mode, self.replicas, self.model_parallel = mode, int(replicas), int(model_parallel)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.is_chief, self.strategy, self.engine = bool(is_chief), strategy, engine

    def scope(self):
        """Build, compile and fit inside this (the TF strategy's scope; a no-op elsewhere)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def per_replica_batch(self, global_batch):
        """The batch each replica computes; `global_batch` must split evenly."""
        if not isinstance(global_batch, int) or global_batch < 1 or global_batch % self.replicas:
            raise ValueError(
                f"batch_size is the global batch and must be a positive multiple of the {self.replicas} "
                f"data-parallel replicas ({self.engine}). Received: batch_size={global_batch!r}; "
                f"use a multiple of {self.replicas}."
            )
        return global_batch // self.replicas

    def process_shard(self):
        """(index, count): which part of each global batch this process loads
        (torch: one part per process; JAX and TF split the global batch themselves)."""
        if self.engine == "torch.distributed":
            return self.process_index, self.process_count
        return 0, 1

    def prepare_model(self, model):
        """torch: rank 0's values of every variable to every process, and
        gradient averaging (once the model is built: a subclassed model built
        by its first `fit` step gets both from `fit_callbacks()`); elsewhere
        nothing (the engines place and reduce variables themselves)."""
        if self.engine == "torch.distributed" and model.built:
            from keras_vit.backend import torch_distributed

            torch_distributed.broadcast_variables(model)
            torch_distributed.average_gradients(model)
        return model

    def fit_callbacks(self):
        """Callbacks to pass to `fit` (after any that restore weights): under
        torch.distributed, `prepare_model` again when training begins, when
        Keras has built every variable."""
        if self.engine != "torch.distributed":
            return []
        plan = self

        class _SyncReplicas(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                plan.prepare_model(self.model)

        return [_SyncReplicas()]

    def distribute_dataset(self, dataset, global_batch):
        """A batched `tf.data.Dataset` regrouped into full global batches (a
        partial last batch cannot split evenly over replicas) and, under
        torch.distributed, cut to this process's part of each. Numpy inputs
        go through `EpochBatches(..., shard=plan.process_shard(), drop_remainder=True)` instead."""
        if self.mode == "none":
            return dataset
        self.per_replica_batch(global_batch)
        dataset = dataset.rebatch(global_batch, drop_remainder=True)
        index, count = self.process_shard()
        if count > 1:
            part = global_batch // count

            def take(*batch):
                batch = batch[0] if len(batch) == 1 else batch
                return keras.tree.map_structure(lambda t: t[index * part:(index + 1) * part], batch)

            dataset = dataset.map(take)
        return dataset

    def describe(self):
        """JSON-ready facts for results.json."""
        return {
            "mode": self.mode, "engine": self.engine, "replicas": self.replicas,
            "model_parallel": self.model_parallel, "processes": self.process_count,
        }


def configure(mode="auto", model_parallel=None, layout_map=None):
    """Sets up `mode` on the current backend and returns a `DistributionPlan`.

    Args:
        mode: "auto", "none", "data" or "model".
        model_parallel: the model axis size for mode "model" (JAX; default 2);
            it must divide the device count.
        layout_map: for mode "model", a function `device_mesh -> LayoutMap`
            (default `keras_vit.ViTBackbone.get_layout_map`).
    """
    if mode not in MODES:
        raise ValueError(f"distribute must be one of {MODES}. Received: distribute={mode!r}")
    if model_parallel is not None and (not isinstance(model_parallel, int) or model_parallel < 1):
        raise ValueError(f"model_parallel must be a positive int. Received: model_parallel={model_parallel!r}")
    if model_parallel not in (None, 1) and mode != "model":
        raise ValueError(
            f"model_parallel={model_parallel} needs distribute='model'. Received: distribute={mode!r}"
        )
    backend = keras.backend.backend()
    if mode == "model" and backend != "jax":
        raise ValueError(
            "distribute='model' (sharded weights) needs the JAX backend (keras.distribution.ModelParallel); "
            f"on {backend} use distribute='data'. Received: distribute='model' with KERAS_BACKEND={backend!r}"
        )
    if backend == "jax":
        return _configure_jax(mode, model_parallel or 2, layout_map)
    if backend == "tensorflow":
        return _configure_tensorflow(mode)
    if backend == "torch":
        return _configure_torch(mode)
    if mode in ("data", "model"):
        raise ValueError(f"distribute={mode!r} is not available on the {backend} backend.")
    return DistributionPlan("none")


def _configure_jax(mode, model_parallel, layout_map):
    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1 and mode != "none":
        keras.distribution.initialize()  # multi-host: reads the KERAS_DISTRIBUTION_* variables
    devices = keras.distribution.list_devices()
    if mode == "auto":
        mode = "data" if len(devices) > 1 else "none"
    process_index = int(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "0") or 0)
    process_count = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1)
    chief = process_index == 0
    if mode == "none":
        keras.distribution.set_distribution(None)
        return DistributionPlan("none", is_chief=chief)
    if mode == "data":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return DistributionPlan("data", len(devices), 1, process_index, process_count, chief,
                                engine="keras.distribution.DataParallel")
    if len(devices) % model_parallel:
        raise ValueError(
            f"model_parallel must divide the {len(devices)} devices. Received: model_parallel={model_parallel}"
        )
    mesh = keras.distribution.DeviceMesh((len(devices) // model_parallel, model_parallel), ("batch", "model"), devices)
    if layout_map is None:
        from keras_vit.backbones.vit_backbone import ViTBackbone

        layout_map = ViTBackbone.get_layout_map
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layout_map(mesh), batch_dim_name="batch")
    )
    return DistributionPlan("model", len(devices) // model_parallel, model_parallel, process_index, process_count,
                            chief, engine="keras.distribution.ModelParallel")


def _configure_tensorflow(mode):
    from keras_vit.backend import tf_distribute

    if mode == "auto":
        several = tf_distribute.device_count() > 1 or os.environ.get("TPU_NAME") or os.environ.get("TF_CONFIG")
        mode = "data" if several else "none"
    if mode == "none":
        return DistributionPlan("none")
    strategy, chief = tf_distribute.make_strategy(os.environ.get("KERAS_VIT_TF_STRATEGY", "auto"))
    return DistributionPlan("data", strategy.num_replicas_in_sync, is_chief=chief, strategy=strategy,
                            engine=f"tf.distribute.{type(strategy).__name__}")


def _configure_torch(mode):
    from keras_vit.backend import torch_distributed

    if mode == "auto":
        mode = "data" if torch_distributed.launched_by_torchrun() else "none"
    if mode == "none":
        return DistributionPlan("none")
    if not torch_distributed.launched_by_torchrun():
        raise ValueError(
            "distribute='data' on torch needs several processes started by torchrun, for example "
            "`torchrun --nproc_per_node=8 -m keras_vit.cli train --distribute data`. Received: WORLD_SIZE="
            f"{os.environ.get('WORLD_SIZE', 'unset')}"
        )
    rank, world = torch_distributed.initialize()
    return DistributionPlan("data", world, 1, rank, world, rank == 0, engine="torch.distributed")


def _replica_engine():
    """The backend module that reduces across data-parallel replicas (TF's
    replica context, torch's processes), or None on JAX, which computes on
    the global batch."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_vit.backend import tf_distribute

        return tf_distribute
    if backend == "torch":
        from keras_vit.backend import torch_distributed

        return torch_distributed
    return None


def replica_sum(value):
    """`value` summed over the data-parallel replicas that each computed a part
    of the global batch (TF replica context, torch processes); JAX computes on
    the global batch already, so there it is `value`."""
    engine = _replica_engine()
    return value if engine is None else engine.all_reduce_sum(value)


def replica_count():
    """How many replicas each compute a part of the batch and combine their
    gradients: TF's replicas in sync (summed gradients), torch's processes
    (averaged gradients); 1 on JAX and on one device."""
    engine = _replica_engine()
    return 1 if engine is None else engine.replica_count()
