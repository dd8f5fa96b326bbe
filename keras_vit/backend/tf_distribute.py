"""`tf.distribute` strategies for the TensorFlow backend.

Why TensorFlow here: Keras 3.15's `keras.distribution` serves the JAX backend
only (its TensorFlow module is a prototype marked not for use), so on
TensorFlow data parallelism is TensorFlow's own: a strategy whose `scope()`
holds the model's build, compile and fit, which Keras's TF trainer already
runs replica by replica (it splits each global batch, sums the gradients and
syncs the metrics).
"""

import os


def make_strategy(kind="auto"):
    """`kind`: "auto" (TPU when a TPU is reachable, multi-worker when
    `TF_CONFIG` names several workers, else MirroredStrategy over the GPUs, or
    over the logical CPUs when there are several), "mirrored", "tpu" or
    "multi_worker". Returns (strategy, is_chief)."""
    import json

    import tensorflow as tf

    if kind == "auto":
        if os.environ.get("TPU_NAME"):
            kind = "tpu"
        elif len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])) > 1:
            kind = "multi_worker"
        else:
            kind = "mirrored"
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver), True
    if kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        chief = resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)
        return strategy, chief
    if kind != "mirrored":
        raise ValueError(f"kind must be 'auto', 'mirrored', 'tpu' or 'multi_worker'. Received: kind={kind!r}")
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    # Cross-device ops: NCCL needs GPUs; on CPUs the reduction is a plain copy.
    cross = None if gpus else tf.distribute.ReductionToOneDevice()
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross), True


def device_count():
    """Devices a MirroredStrategy would use (GPUs, else logical CPUs)."""
    import tensorflow as tf

    return len(tf.config.list_logical_devices("GPU")) or len(tf.config.list_logical_devices("CPU"))


def replica_count():
    """Replicas whose gradients Keras sums in the current strategy (1 outside one)."""
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def all_reduce_sum(value):
    """Sum of `value` over the replicas, inside a replica context (else `value`)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def split_logical_cpus(count):
    """Splits the host CPU into `count` logical devices (before TF starts its
    runtime): how data parallelism is tested without GPUs."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(count))
