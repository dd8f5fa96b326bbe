"""`keras-vit finetune`: a preset adapted with a tuning method on the bundled
digits, its results, its saved preset and its delta file; the transfer
experiment's code path."""

import json
import os

import numpy as np
import pytest

import keras_vit
from keras_vit import tuning
from layer_checks import to_np
from recipes import finetune


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny digits classifier saved as a preset (12x12 grayscale, RGB too)."""
    root = tmp_path_factory.mktemp("base")
    paths = {}
    for channels in (1, 3):
        backbone = keras_vit.ViTBackbone(
            image_shape=(12, 12, channels), patch_size=3, hidden_dim=10, num_layers=2, num_heads=2, mlp_dim=13
        )
        preprocessor = keras_vit.ViTImagePreprocessor(12, mean=0.5, std=0.5, scale=1 / 255)
        model = keras_vit.ViT(backbone, num_classes=10, preprocessor=preprocessor)
        paths[channels] = str(root / f"base{channels}")
        model.save_to_preset(paths[channels])
    return paths


def test_finetune_writes_results_preset_and_delta(base, tmp_path):
    config, output = finetune.parse_args([
        base[1], "--smoke", "--dataset", "digits:5-9", "--labels-per-class", "3", "--method", "vpt+bias",
        "--prompts", "2", "--deep", "--save-delta", "--output", str(tmp_path / "run"),
    ])
    results = finetune.run(config, output, verbose=0)
    assert results["method"] == ["vpt", "bias"] and results["train_images"] == 15
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["trainable_parameters"] == results["trainable_parameters"] < results["total_parameters"]
    assert 0.0 <= saved["test_accuracy"] <= 1.0
    tuned = keras_vit.ViT.from_preset(str(tmp_path / "run" / "preset"))
    assert tuned.num_classes == 5 and tuned.backbone.num_prompts == 2 and tuned.backbone.deep_prompts
    images = np.random.default_rng(0).uniform(0, 255, (3, 12, 12, 1)).astype("float32")
    reloaded = tuning.load_delta(results["delta"])
    np.testing.assert_array_equal(to_np(reloaded.predict(images, verbose=0)), to_np(tuned.predict(images, verbose=0)))
    assert results["delta_bytes"] < os.path.getsize(tmp_path / "run" / "preset" / "model.weights.h5")


def test_lora_on_an_rgb_preset_with_layer_decay(base, tmp_path):
    config, output = finetune.parse_args([
        base[3], "--smoke", "--method", "lora", "--rank", "2", "--layer-decay", "0.7", "--optimizer", "sgd",
        "--output", str(tmp_path / "run"),
    ])
    results = finetune.run(config, output, verbose=0)
    assert results["tuning_options"]["rank"] == 2 and np.isfinite(results["test_loss"])
    # LoRA is merged into the saved preset: a plain model
    tuned = keras_vit.ViT.from_preset(str(tmp_path / "run" / "preset"))
    assert tuned.count_params() == keras_vit.ViT.from_preset(base[3], num_classes=10).count_params()


@pytest.mark.one_backend(
    "torch", "the recipe chains tuning.prepare and layer_decay, checked on every backend in tests/tuning and test_swin"
)
def test_a_swin_preset_with_lora_bias_and_layer_decay(tmp_path):
    """The same recipe on a Swin classifier: its blocks get LoRA on qkv,
    timm's Swin layer ids set the decay, LoRA is merged into the saved preset."""
    backbone = keras_vit.SwinBackbone(image_shape=(16, 16, 3), hidden_dim=6, depths=(1, 1), num_heads=(1, 3), window_size=2)
    preprocessor = keras_vit.ViTImagePreprocessor(16, mean=0.5, std=0.5, scale=1 / 255)
    keras_vit.Swin(backbone, num_classes=10, preprocessor=preprocessor).save_to_preset(str(tmp_path / "swin"))
    assert finetune.classifier_class(str(tmp_path / "swin")) is keras_vit.Swin
    assert finetune.classifier_class("swin_t") is keras_vit.Swin and finetune.classifier_class("vit_b16") is keras_vit.ViT
    assert finetune.classifier_class("mvitv2_t") is keras_vit.MViT
    config, output = finetune.parse_args([
        str(tmp_path / "swin"), "--smoke", "--method", "lora+bias", "--rank", "2", "--layer-decay", "0.7",
        "--output", str(tmp_path / "run"),
    ])
    results = finetune.run(config, output, verbose=0)
    assert results["method"] == ["lora", "bias"] and np.isfinite(results["test_loss"])
    tuned = keras_vit.Swin.from_preset(str(tmp_path / "run" / "preset"))
    assert tuned.count_params() == keras_vit.Swin.from_preset(str(tmp_path / "swin")).count_params()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--method", "prompt"], "--method: unknown"),
        (["--method", "partial"], "needs --k"),
        (["--dataset", "digits:7-3"], "digits:A-B needs"),
        (["--layer-decay", "1.5"], "--layer-decay must be in"),
        (["--rank", "0"], "--rank"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(base, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        finetune.parse_args([base[1], *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.one_backend(
    "tensorflow",
    "the experiment only chains the classification and finetune recipes, which run on every backend above",
)
def test_transfer_experiment_smoke(tmp_path):
    from recipes import transfer_experiment

    results = transfer_experiment.run(
        str(tmp_path), seeds=1, smoke=True, methods=["scratch", "linear", "vpt-deep (10)"], labels_per_class=2
    )
    assert [row["method"] for row in results["summary"]] == ["scratch", "linear", "vpt-deep (10)"]
    assert results["summary"][0]["trainable_fraction"] == 1.0 > results["summary"][1]["trainable_fraction"]
    assert (tmp_path / "transfer.png").stat().st_size > 1000
    assert "| linear |" in (tmp_path / "transfer.md").read_text()
