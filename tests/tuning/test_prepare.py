"""keras_vit.tuning.prepare on every task: each method trains exactly its
weights (counts equal their arithmetic; after training steps the frozen
weights are bitwise unchanged), added weights start as the identity, prepared
models save, load and reload from a delta file."""

import keras
import numpy as np
import pytest

from keras_vit import DETR
from keras_vit import DPTDepthEstimator
from keras_vit import ResNetBackbone
from keras_vit import Segmenter
from keras_vit import ViT
from keras_vit import ViTBackbone
from keras_vit import tuning
from layer_checks import check_config_round_trip
from layer_checks import to_np

# Odd sizes: width 10 (heads 2), MLP 13, 3 blocks, a 4 x 5 grid of 3-pixel patches.
SIZE, PATCH, D, HEADS, MLP, L, K = (12, 15), 3, 10, 2, 13, 3, 4
N = (SIZE[0] // PATCH) * (SIZE[1] // PATCH)


def _vit(**backbone):
    config = dict(image_shape=(*SIZE, 3), patch_size=PATCH, hidden_dim=D, num_layers=L, num_heads=HEADS, mlp_dim=MLP)
    return ViT(ViTBackbone(**{**config, **backbone}), num_classes=K)


def _data(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *SIZE, 3)).astype("float32"), rng.integers(0, K, n)


HEAD = D * K + K
BLOCK = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (D * MLP + MLP) + (MLP * D + D)
BIASES = L * (D + 3 * D + D + D + MLP + D) + D + D + HEAD  # blocks' biases and norm betas, patch, final norm; the head
CASES = {
    "full": (("full", {}), None),
    "linear": (("linear", {}), HEAD),
    "partial": (("partial", {"k": 1}), BLOCK + 2 * D + HEAD),
    "bias": (("bias", {}), BIASES),
    "adapter": (("adapter", {"reduction": 3}), L * (D * 3 + 3 + 3 * D + D) + HEAD),
    "lora": (("lora", {"rank": 2}), L * (D * 2 + 2 * 3 * D) + HEAD),
    "lora_mlp_bias": ((["lora", "bias"], {"rank": 2, "targets": ["fc1", "fc2"]}), L * (D * 2 + 2 * MLP + MLP * 2 + 2 * D) + BIASES),
    "vpt_shallow": (("vpt", {"num_prompts": 3}), 3 * D + HEAD),
    "vpt_deep": (("vpt", {"num_prompts": 3, "deep": True}), L * 3 * D + HEAD),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trains_exactly_the_methods_weights(case):
    (method, options), expected = CASES[case]
    model = tuning.prepare(_vit(), method, **options)
    if expected is None:
        expected = model.count_params()
    assert tuning.trainable_parameters(model) == expected
    summary = tuning.summary(model, print_fn=None)
    assert summary["trainable"] == expected and summary["total"] == model.count_params()

    # Off the zero initialisations (adapter up-projections, LoRA B), whose
    # partners get no gradient on the first step.
    rng = np.random.default_rng(0)
    for v in model.trainable_weights:
        v.assign(to_np(v) + 0.05 * rng.normal(size=v.shape).astype("float32"))
    before = {v.path: to_np(v) for v in model.weights}
    trainable = {v.path for v in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for v in model.weights:
        after = to_np(v)
        if v.path in trainable:
            assert not np.array_equal(after, before[v.path]), f"{v.path} did not train"
        else:
            assert np.array_equal(after, before[v.path]), f"{v.path} is frozen but changed"


@pytest.mark.parametrize("method,options", [("adapter", {}), ("lora", {"rank": 3})])
def test_added_weights_start_as_the_identity(method, options):
    model = _vit()
    x, _ = _data()
    expected = to_np(model(x))
    prepared = tuning.prepare(model, method, **options)
    np.testing.assert_allclose(to_np(prepared(x)), expected, atol=1e-6)


def test_prepared_model_saves_and_loads_with_its_prompts_and_adapters(tmp_path):
    model = tuning.prepare(_vit(), ["vpt", "adapter"], num_prompts=2, deep=True)
    for v in model.trainable_weights:  # move off the identity initialisation
        v.assign(v + 0.1)
    x, _ = _data()
    model.save_to_preset(tmp_path / "tuned")
    loaded = ViT.from_preset(str(tmp_path / "tuned"))
    assert loaded.backbone.num_prompts == 2 and loaded.backbone.adapter_reduction == 8
    np.testing.assert_array_equal(to_np(loaded(x)), to_np(model(x)))


def test_delta_reloads_on_the_base_exactly(tmp_path):
    base = _vit()
    base.save_to_preset(tmp_path / "base")
    model = ViT.from_preset(str(tmp_path / "base"), num_classes=3)
    model = tuning.prepare(model, ["vpt", "lora"], num_prompts=2, rank=2)
    for v in model.trainable_weights:
        v.assign(v + 0.05)
    x, _ = _data()
    metadata = tuning.save_delta(model, tmp_path / "task.safetensors", base=str(tmp_path / "base"))
    assert metadata["method"] == ["vpt", "lora"] and metadata["from_preset"]["num_classes"] == 3
    loaded = tuning.load_delta(tmp_path / "task.safetensors")
    np.testing.assert_array_equal(to_np(loaded(x)), to_np(model(x)))
    # the delta holds the tuned weights only
    from safetensors.numpy import load_file

    stored = load_file(str(tmp_path / "task.safetensors"))
    assert sum(a.size for a in stored.values()) == tuning.trainable_parameters(model)

    other = _vit()
    other.save_to_preset(tmp_path / "other")
    with pytest.raises(ValueError, match="other base weights"):
        tuning.load_delta(tmp_path / "task.safetensors", base=str(tmp_path / "other"))


def test_head_initializer_zeroes_the_head():
    model = tuning.prepare(_vit(), "linear", head_initializer="zeros")
    assert not np.any(to_np(model.get_layer("head").kernel))


@pytest.fixture(scope="module")
def detr():
    """A tiny DETR, built (one eager call: slow on JAX, so shared)."""
    model = DETR(
        ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(16, 16, 32, 32)), num_classes=3, num_queries=5,
        hidden_dim=12, num_heads=3, encoder_layers=1, decoder_layers=2, ffn_dim=9,
    )
    model(np.zeros((1, 32, 32, 3), "float32"))
    return model


def test_dense_tasks_and_detr(detr):
    backbone = ViTBackbone(image_shape=(16, 16, 3), patch_size=4, hidden_dim=12, num_layers=2, num_heads=3, mlp_dim=7)
    dpt = DPTDepthEstimator(backbone, taps=["block_0", "block_1"], neck_widths=[6, 8], reassemble_factors=[2, 1], fusion_width=6)
    head = sum(int(np.prod(v.shape)) for v in dpt.weights) - backbone.count_params()
    prepared = tuning.prepare(dpt, "vpt", num_prompts=2, deep=True)
    assert tuning.trainable_parameters(prepared) == 2 * 2 * 12 + head
    x = np.zeros((1, 16, 16, 3), "float32")
    assert prepared(x).shape == dpt(x).shape

    seg_backbone = ViTBackbone(image_shape=(16, 16, 3), patch_size=4, hidden_dim=12, num_layers=2, num_heads=3, mlp_dim=7)
    segmenter = tuning.prepare(Segmenter(seg_backbone, num_classes=3, decoder="linear"), "partial", k=1)
    assert tuning.trainable_parameters(segmenter) == (
        sum(int(np.prod(v.shape)) for v in segmenter.backbone.get_layer("block_1").weights) + 2 * 12 + (12 * 3 + 3)
    )

    heads = sum(int(np.prod(v.shape)) for v in detr.weights) - sum(int(np.prod(v.shape)) for v in detr.backbone.weights)
    frozen_bn = sum(int(np.prod(v.shape)) for v in detr.non_trainable_weights)
    prepared = tuning.prepare(detr, "lora", rank=2, train_head=False)
    # query and value projections of 1 encoder + 2 decoder layers (self- and cross-attention)
    assert tuning.trainable_parameters(prepared) == 5 * 2 * (12 * 2 + 2 * 12)
    full = tuning.prepare(detr, "full")
    # DETR's fine-tuning keeps the stem and layer1 frozen (and every BatchNorm)
    stem = sum(
        int(np.prod(v.shape)) for layer in detr.backbone.layers
        if layer.name == "conv1" or (layer.name.startswith("layer1_") and "bn" not in layer.name) for v in layer.weights
    )
    everything = sum(int(np.prod(v.shape)) for v in detr.weights)
    assert tuning.trainable_parameters(full) == everything - frozen_bn - stem
    assert tuning.trainable_parameters(tuning.prepare(detr, "full", train_stem=True)) == everything - frozen_bn
    assert heads > 0


def test_layers_round_trip():
    from keras_vit.tuning import BottleneckAdapter
    from keras_vit.tuning import PromptTokenRemoval
    from keras_vit.tuning import VisualPrompts

    x = keras.random.normal((2, 7, 10))
    check_config_round_trip(VisualPrompts(3, num_prefix_tokens=1, patch_size=(2, 3), dropout_rate=0.1), x)
    check_config_round_trip(VisualPrompts(3, num_prefix_tokens=1, replace=True), x)
    check_config_round_trip(PromptTokenRemoval(3, 1), x)
    check_config_round_trip(BottleneckAdapter(10, reduction=4), x)


@pytest.mark.parametrize(
    "method,options,error,match",
    [
        ("prompt", {}, ValueError, "Unknown fine-tuning method"),
        (3, {}, TypeError, "method must be one of"),
        (["full", "bias"], {}, ValueError, "combines with nothing"),
        ("partial", {}, ValueError, "needs k="),
        ("partial", {"k": 9}, ValueError, "larger than the encoder's 3 blocks"),
        ("linear", {"rank": 2}, ValueError, r"rank \(an option of 'lora'\)"),
        ("lora", {"targets": ["query"]}, ValueError, r"Available: \['fc1', 'fc2', 'proj', 'qkv'\]"),
        ("vpt", {"num_prompts": 0}, ValueError, "num_prompts must be a positive int"),
        ("vpt", {"prompt_dropout": 1.5}, ValueError, "prompt_dropout must be in"),
    ],
)
def test_bad_arguments(method, options, error, match):
    with pytest.raises(error, match=match):
        tuning.prepare(_vit(), method, **options)


def test_vpt_and_adapters_need_a_vit_encoder(detr):
    with pytest.raises(ValueError, match="need a ViT encoder"):
        tuning.prepare(detr, "vpt")


def test_detr_finetuning_optimizer_gives_the_backbone_a_tenth(detr):
    optimizer = tuning.detr_finetuning_optimizer(detr)
    assert optimizer.global_clipnorm == 0.1 and optimizer.weight_decay == 1e-4
    assert optimizer.lr_scale(detr.backbone.get_layer("layer2_0_conv1").kernel) == pytest.approx(0.1)
    assert optimizer.lr_scale(detr.class_head.kernel) == 1.0


def test_bfloat16_training_of_prompts_adapters_and_lora_is_finite():
    config = dict(image_shape=(*SIZE, 3), patch_size=PATCH, hidden_dim=D, num_layers=L, num_heads=HEADS, mlp_dim=MLP)
    model = ViT(ViTBackbone(**config, dtype="mixed_bfloat16"), num_classes=K, dtype="mixed_bfloat16")
    model = tuning.prepare(model, ["vpt", "adapter", "lora"], num_prompts=2, deep=True, rank=2)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert all(np.all(np.isfinite(to_np(v))) for v in model.trainable_weights)
