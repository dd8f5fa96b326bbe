"""Data and model parallelism on each backend's own engine, on CPU: a tiny ViT
and a tiny DETR trained for 4 steps on N devices end with the weights and
losses of the one-device run on the same global batches.

JAX: 8 virtual XLA host devices (data parallel over 8, and a 2x4
(batch, model) mesh with the ViT's and DETR's kernels sharded by their
layout maps). TensorFlow: MirroredStrategy
over 2 logical CPUs. torch: 2 gloo processes started by torchrun. Each run is a
process of its own (tests/distributed_worker.py): the device count is fixed
before the backend starts.
"""

import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import distribution
from keras_vit.data import EpochBatches

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
BACKEND = keras.backend.backend()
WEIGHT_TOLERANCE = 1e-5
LOSS_TOLERANCE = 1e-5


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return dict(env, PYTHONPATH=os.path.dirname(HERE), **extra)


def _run(command, env):
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result.stdout


def _compare(reference, runs, families=("vit", "detr")):
    """Every weight of every run equal to the reference's; the mean of the runs'
    (per-process) epoch losses equal to the reference's."""
    report = {}
    for family in families:
        keys = [k for k in reference.files if k.startswith(family + "/")]
        assert keys
        worst = max(float(np.max(np.abs(run[k] - reference[k]), initial=0.0)) for run in runs for k in keys)
        losses = np.mean([run[f"{family}_losses"] for run in runs], axis=0)
        np.testing.assert_allclose(losses, reference[f"{family}_losses"], rtol=LOSS_TOLERANCE)
        assert worst <= WEIGHT_TOLERANCE, (family, worst)
        # The run really trained: the weights moved well beyond the tolerance.
        initial_gap = max(float(np.max(np.abs(reference[k]))) for k in keys)
        assert initial_gap > 100 * WEIGHT_TOLERANCE
        report[family] = worst
    return report


@pytest.mark.skipif(BACKEND != "jax", reason="the JAX engine (keras.distribution)")
def test_jax_data_and_model_parallel_on_8_devices_equal_one_device(tmp_path):
    out = str(tmp_path / "jax")
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    families = ("vit", "detr", "vitdet")
    _run([sys.executable, WORKER, out, "none", "data", "model", "--model-parallel", "4", "--cases", ",".join(families)], env)
    reference = np.load(out + "-none.npz")
    data = np.load(out + "-data.npz")
    model = np.load(out + "-model.npz")
    assert int(data["replicas"]) == 8 and int(model["replicas"]) == 2
    _compare(reference, [data], families)
    _compare(reference, [model], families)
    # The kernels are really sharded over the 4-way model axis: each device
    # holds a quarter of the qkv kernel's columns and of fc2's rows (ViT), of
    # the attention query's columns and fc2's rows in every DETR encoder and
    # decoder layer, and of a ResNet convolution's output channels.
    hidden, mlp = 16, 32
    for block in (0, 1):
        assert tuple(model[f"shard/block_{block}/attention/qkv/kernel"]) == (hidden, 3 * hidden // 4)
        assert tuple(model[f"shard/block_{block}/fc2/kernel"]) == (mlp // 4, hidden)
        assert str(model[f"spec/block_{block}/attention/qkv/kernel"]) == "P(None, 'model')"

    def shard(suffix, family=""):  # the DETR's layer names carry Keras' auto-numbered prefix (detr_1/...)
        (key,) = [k for k in model.files if k.startswith(f"shard/{family}") and k.endswith(suffix) and ("vitdet/" in k) == bool(family)]
        return tuple(model[key])

    for layer in ("encoder_layer_0", "decoder_layer_0", "decoder_layer_1"):
        assert shard(f"{layer}/self_attention/query/kernel") == (16, 16 // 4)
        assert shard(f"{layer}/fc2/kernel") == (16 // 4, 16)
    assert shard("decoder_layer_1/cross_attention/query/kernel") == (16, 16 // 4)
    assert shard("/layer2_0_conv2/kernel") == (3, 3, 4, 4 // 4)  # bottleneck width 16 / 4 = 4
    # DETR on ViTDet (DETR.get_layout_map(backbone_class=ViTDetBackbone)):
    # the ViT blocks Megatron-style, the pyramid's convolutions by output channels.
    for block in (0, 1):
        assert shard(f"block_{block}/attention/qkv/kernel", "vitdet/") == (16, 3 * 16 // 4)
        assert shard(f"block_{block}/fc2/kernel", "vitdet/") == (64 // 4, 16)
    assert shard("simfp_5/lateral/kernel", "vitdet/") == (1, 1, 16, 16 // 4)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the TensorFlow engine (tf.distribute)")
def test_tensorflow_mirrored_on_2_logical_cpus_equals_one_device(tmp_path):
    out = str(tmp_path / "tf")
    stdout = _run([sys.executable, WORKER, out, "none", "data", "--logical-cpus", "2"], _env())
    assert "tf.distribute.MirroredStrategy" in stdout
    reference, data = np.load(out + "-none.npz"), np.load(out + "-data.npz")
    assert int(data["replicas"]) == 2
    _compare(reference, [data])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(BACKEND != "torch", reason="the torch engine (torch.distributed)")
def test_torch_two_gloo_processes_equal_one_process(tmp_path):
    out = str(tmp_path / "torch")
    _run([sys.executable, WORKER, out, "none"], _env())
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", WORKER, out, "data",
    ]
    stdout = _run(command, _env())
    assert "torch.distributed" in stdout
    reference = np.load(out + "-none.npz")
    ranks = [np.load(f"{out}-data-rank{r}.npz") for r in (0, 1)]
    assert [int(r["processes"]) for r in ranks] == [2, 2]
    # Both processes end with the same weights, equal to the one-process run's.
    _compare(reference, ranks)


def test_configure_none_and_auto_on_one_device():
    plan = distribution.configure("none")
    assert (plan.mode, plan.replicas, plan.is_chief, plan.process_shard()) == ("none", 1, True, (0, 1))
    assert plan.per_replica_batch(6) == 6 and plan.fit_callbacks() == []
    assert distribution.configure("auto").mode in ("none", "data")
    distribution.configure("none")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="distribute must be one of .*'pipeline'"):
        distribution.configure("pipeline")
    with pytest.raises(ValueError, match="model_parallel must be a positive int"):
        distribution.configure("model", model_parallel=0)
    with pytest.raises(ValueError, match="needs distribute='model'"):
        distribution.configure("data", model_parallel=2)
    plan = distribution.DistributionPlan("data", replicas=4, engine="test")
    with pytest.raises(ValueError, match="multiple of the 4 data-parallel replicas.*batch_size=6"):
        plan.per_replica_batch(6)
    assert plan.per_replica_batch(8) == 2


@pytest.mark.skipif(BACKEND == "jax", reason="model parallelism is the JAX engine's")
def test_model_parallel_off_jax_says_what_to_use():
    with pytest.raises(ValueError, match="needs the JAX backend.*use distribute='data'"):
        distribution.configure("model")


@pytest.mark.skipif(BACKEND != "torch", reason="torch only")
def test_torch_data_parallel_without_torchrun_says_how_to_launch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="torchrun --nproc_per_node"):
        distribution.configure("data")


@pytest.mark.skipif(BACKEND == "torch", reason="keras.distribution has no torch implementation")
def test_layout_map_names_its_axes():
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), keras.distribution.list_devices()[:1])
    layout_map = keras_vit.ViTBackbone.get_layout_map(mesh)
    assert layout_map["block_3/attention/qkv/kernel"].axes == (None, "model")
    assert layout_map["dpt/encoder/block_0/fc2/kernel"].axes == ("model", None)
    assert layout_map["block_0/norm1/gamma"] is None
    with pytest.raises(ValueError, match="model_parallel_dim_name must be an axis of device_mesh.*'tensor'"):
        keras_vit.ViTBackbone.get_layout_map(mesh, model_parallel_dim_name="tensor")
    detr = keras_vit.DETR.get_layout_map(mesh)
    assert detr["conv1/kernel"].axes == (None, None, None, "model")  # the ResNet stem
    assert detr["layer4_2_downsample/kernel"].axes == (None, None, None, "model")
    assert detr["detr/decoder_layer_5/cross_attention/value/kernel"].axes == (None, "model")
    assert detr["detr/encoder_layer_0/self_attention/output/kernel"].axes == ("model", None)
    assert detr["detr/encoder_layer_0/fc1/bias"].axes == ("model",)
    assert detr["detr/class_head/kernel"] is None and detr["detr/query_embeddings"] is None
    assert detr["bn1/moving_mean"] is None
    with pytest.raises(ValueError, match="data_parallel_dim_name must be an axis of device_mesh.*'data'"):
        keras_vit.ResNetBackbone.get_layout_map(mesh, data_parallel_dim_name="data")
    # The hierarchical backbones: every variable path they build is matched or replicated as documented.
    for cls, small in (
        (keras_vit.SwinBackbone, dict(image_shape=(32, 32, 3), hidden_dim=4, depths=(1, 1), num_heads=(1, 2), window_size=2)),
        (keras_vit.MViTBackbone, dict(image_shape=(32, 32, 3), hidden_dim=4, depths=(1, 1), num_heads=1)),
    ):
        layout = cls.get_layout_map(mesh)
        paths = {v.path: v for v in cls(**small).weights}
        assert layout["stage_2_block_0/attention/qkv/kernel"].axes == (None, "model")
        assert layout["stage_1_block_0/fc2/kernel"].axes == ("model", None)
        assert layout["patch_embedding/kernel"].axes == (None, None, None, "model")
        sharded = [p for p in paths if layout[p] is not None]
        assert len(sharded) == 1 + 6 * 2, (cls.__name__, sharded)  # the patch embedding, 6 per block


def test_epoch_batches_shards_split_each_global_batch():
    x = np.arange(10)
    whole = EpochBatches(x, None, 4, seed=3, drop_remainder=True)
    parts = [EpochBatches(x, None, 4, seed=3, drop_remainder=True, shard=(i, 2)) for i in (0, 1)]
    assert len(whole) == 2 and all(len(p) == 2 for p in parts)
    for step in range(2):
        np.testing.assert_array_equal(np.concatenate([p[step] for p in parts]), whole[step])
    with pytest.raises(ValueError, match="divisible by the shard count 3"):
        EpochBatches(x, None, 4, shard=(0, 3), drop_remainder=True)
    with pytest.raises(ValueError, match="pass drop_remainder=True"):
        EpochBatches(x, None, 4, shard=(0, 2))
    with pytest.raises(ValueError, match=r"shard must be \(index, count\)"):
        EpochBatches(x, None, 4, shard=(2, 2))


def test_tf_data_regrouped_into_whole_global_batches_and_cut_per_process():
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices((np.arange(11), np.arange(11) * 10)).batch(3)
    plan = distribution.DistributionPlan("data", replicas=2, process_index=1, process_count=2, engine="torch.distributed")
    batches = [(x.numpy().tolist(), y.numpy().tolist()) for x, y in plan.distribute_dataset(dataset, 4)]
    # Global batches [0..3], [4..7] (the partial [8..10] cannot split); this process takes the second half.
    assert batches == [([2, 3], [20, 30]), ([6, 7], [60, 70])]
    single = distribution.DistributionPlan("data", replicas=2, engine="tf.distribute.MirroredStrategy")
    assert [x.numpy().tolist() for x, _ in single.distribute_dataset(dataset, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
