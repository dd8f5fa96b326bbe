"""One preset contract for every family: registry, directory format, class checks, legacy reader."""

import ast
import json
import os
import pathlib

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import DETR
from keras_vit import ResNetBackbone
from keras_vit import ViT
from keras_vit import ViTBackbone
from keras_vit.data.digits import load_digits
from keras_vit.presets import registry
from layer_checks import to_np

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
LIBRARY = pathlib.Path(keras_vit.__file__).parent


def _module_imports(path):
    """keras_vit modules imported at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return {n for n in names if n.startswith("keras_vit")}


def _module_name(path):
    relative = path.relative_to(LIBRARY.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_presets_package_imports_no_model_at_import_time():
    for path in (LIBRARY / "presets").glob("*.py"):
        for name in _module_imports(path):
            assert not name.startswith(("keras_vit.models", "keras_vit.backbones")), (path.name, name)


def test_module_import_graph_has_no_cycle():
    modules = {_module_name(p): p for p in LIBRARY.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _module_imports(path):
            # "from keras_vit.x import y" names module keras_vit.x.y or attribute y of keras_vit.x
            if imported in modules and imported != name:
                targets.add(imported)
        graph[name] = targets
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_list_presets_covers_every_family_with_a_filter():
    everything = keras_vit.list_presets()
    families = ("vit", "detr", "dpt_depth", "dpt_segmentation", "mvit", "segmenter", "swin", "vitdet")
    assert set().union(*(keras_vit.list_presets(f) for f in families)) == set(everything)
    assert "vit_b16" in everything and "detr_r50" in everything and "dpt_large_ade" in everything
    assert keras_vit.list_presets("dpt_segmentation") == ["dpt_hybrid_ade", "dpt_large_ade"]
    with pytest.raises(ValueError, match=r"family must be one of \['detr', 'dpt_depth', 'dpt_segmentation', 'mvit', 'segmenter', 'swin', 'vit', 'vitdet'\] \(or a prefix"):
        keras_vit.list_presets("dpt_nope")
    # a prefix selects every family it starts (the issue: list_presets("dpt") was refused)
    assert keras_vit.list_presets("dpt") == sorted(keras_vit.list_presets("dpt_depth") + keras_vit.list_presets("dpt_segmentation"))


def test_each_class_lists_its_presets():
    assert sorted(ViT.presets) == keras_vit.list_presets("vit")
    # A DPT preset's backbone is a ViTBackbone: ViTBackbone.from_preset("dpt_large") gives it.
    assert sorted(ViTBackbone.presets) == sorted(
        keras_vit.list_presets("vit") + keras_vit.list_presets("dpt_depth") + keras_vit.list_presets("dpt_segmentation")
        + keras_vit.list_presets("segmenter")
    )
    assert sorted(keras_vit.DPTDepthEstimator.presets) == keras_vit.list_presets("dpt_depth")
    assert sorted(DETR.presets) == keras_vit.list_presets("detr")
    assert sorted(ResNetBackbone.presets) == keras_vit.list_presets("detr")
    assert "42.0 AP" in DETR.presets["detr_r50"]


def test_unknown_names_suggest_across_families():
    with pytest.raises(ValueError, match=r"closest match is 'detr_r50'"):
        ViT.from_preset("detr_r5O", load_weights=False)


def test_a_preset_of_another_class_names_the_right_class(tmp_path):
    with pytest.raises(ValueError, match=r"holds a DETR preset, not a ViT.*keras_vit.DETR.from_preset"):
        ViT.from_preset(str(FIXTURES / "legacy_detr_tiny"))
    with pytest.raises(ValueError, match=r"holds a ViT preset, not a DETR.*keras_vit.ViT.from_preset"):
        DETR.from_preset("vit_ti16", load_weights=False)
    with pytest.raises(ValueError, match=r"backbone is a ResNetBackbone, not a ViTBackbone"):
        ViTBackbone.from_preset("detr_r50", load_weights=False)


def _tiny_vit():
    backbone = ViTBackbone(image_shape=(30, 30, 3), patch_size=3, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37)
    return ViT(backbone, num_classes=5, preprocessor=keras_vit.ViTImagePreprocessor(30))


def test_format_2_directory_names_the_class_and_nests_backbone_and_preprocessor(tmp_path):
    model = _tiny_vit()
    model.save_to_preset(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["registered_name"] == "keras_vit>ViT" and config["format_version"] == 2
    assert config["config"]["backbone"]["registered_name"] == "keras_vit>ViTBackbone"
    assert config["config"]["backbone"]["config"]["mlp_dim"] == 37
    preprocessor = json.loads((tmp_path / "preprocessor.json").read_text())
    assert preprocessor["registered_name"] == "keras_vit>ViTImagePreprocessor"
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["class"] == "keras_vit>ViT"
    assert metadata["weights_bytes"] == os.path.getsize(tmp_path / "model.weights.h5")
    assert len(metadata["weights_sha256"]) == 64
    assert not [n for n in os.listdir(tmp_path.parent) if n.endswith((".partial", ".old"))]


def test_backbones_save_and_load_alone(tmp_path):
    model = _tiny_vit()
    model.backbone.save_to_preset(tmp_path / "backbone")
    restored = ViTBackbone.from_preset(str(tmp_path / "backbone"))
    x = np.random.default_rng(0).normal(size=(2, 30, 30, 3)).astype("float32")
    np.testing.assert_allclose(to_np(restored(x)), to_np(model.backbone(x)), atol=1e-6)
    with pytest.raises(ValueError, match=r"holds a ViTBackbone alone, not a ViT.*ViTBackbone.from_preset"):
        ViT.from_preset(str(tmp_path / "backbone"))
    # The backbone of a task preset.
    model.save_to_preset(tmp_path / "task")
    backbone = ViTBackbone.from_preset(str(tmp_path / "task"))
    np.testing.assert_allclose(to_np(backbone(x)), to_np(model.backbone(x)), atol=1e-6)


def test_resnet_backbone_of_a_detr_preset():
    backbone = ResNetBackbone.from_preset("detr_r50_dc5", load_weights=False)
    assert isinstance(backbone, ResNetBackbone) and backbone.dilate_last_stage


def test_legacy_vit_directory_scores_through_predict_on_raw_images():
    """A directory written by keras_vit before format 2 (the digits model of
    the main job, trained briefly) loads; `predict` on raw digits applies its
    preprocessor and scores what the model scored when it was written, on
    every backend."""
    expected = np.load(FIXTURES / "legacy_vit_digits_expected.npz")
    model = ViT.from_preset(str(FIXTURES / "legacy_vit_digits"))
    _, (x_test, y_test) = load_digits(image_size=16, seed=0)
    logits = model.predict(x_test, batch_size=128, verbose=0)
    np.testing.assert_allclose(logits[:16], expected["logits"], atol=1e-4)
    accuracy = float(np.mean(np.argmax(logits, -1) == y_test))
    assert abs(accuracy - float(expected["accuracy"])) <= 1.0 / len(y_test)
    assert accuracy > 0.85
    # Calling the model directly takes preprocessed images: the documented way.
    direct = to_np(model(model.preprocessor(x_test[:16])))
    np.testing.assert_allclose(direct, expected["logits"], atol=1e-4)


def test_legacy_detr_directory_loads():
    expected = np.load(FIXTURES / "legacy_detr_tiny_expected.npz")
    model = DETR.from_preset(str(FIXTURES / "legacy_detr_tiny"))
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 64, 80, 3)).astype("float32")
    outputs = model(images)
    np.testing.assert_allclose(to_np(outputs["logits"]), expected["logits"], atol=1e-4)
    np.testing.assert_allclose(to_np(outputs["boxes"]), expected["boxes"], atol=1e-5)


def test_a_new_family_is_one_registration(monkeypatch):
    family = registry.PresetFamily(
        name="toy",
        task="keras_vit>ViT",
        backbone="keras_vit>ViTBackbone",
        presets={"toy_vit": {"description": "a toy"}},
        table_config=lambda name: keras_vit.presets.vit_presets.table_config("vit_ti16"),
        fetch=None,
        build=keras_vit.presets.vit_presets.build_from_config,
        override=keras_vit.presets.vit_presets.override,
        transfer=keras_vit.presets.vit_presets.transfer_weights,
    )
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    registry.register_family(family)
    assert "toy_vit" in keras_vit.list_presets() and keras_vit.list_presets("toy") == ["toy_vit"]
    assert ViT.from_preset("toy_vit", load_weights=False).backbone.hidden_dim == 192
    clash = registry.PresetFamily(**{**family.__dict__, "name": "toy2", "presets": {"vit_b16": {"description": ""}}})
    with pytest.raises(ValueError, match=r"Preset names \['vit_b16'\] of family 'toy2' are taken by family 'vit'"):
        registry.register_family(clash)
