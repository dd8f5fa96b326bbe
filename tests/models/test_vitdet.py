"""ViTDetBackbone against transformers' `VitDetBackbone` (the plain ViT) and
a torch simple feature pyramid written from the paper
(tests/vitdet_reference.py), through the converters of the release
layouts: detectron2's `.pkl` and transformers' folder. One odd tiny config
for the module: width 36, 3 heads, window 4 (the 11 x 15 grid is padded in
every window block), a global block whose tables were trained for 10 x 14
(resized), a residual block, a 8 x 8 pre-training position grid."""

import os
import pickle

import keras
import numpy as np
import pytest

from keras_vit import DETR
from keras_vit import ViTDetBackbone
from keras_vit.data.shapes import make_shapes
from reference_models import images
from reference_models import max_abs_diff
from reference_models import randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
from vitdet_reference import SimpleFeaturePyramid  # noqa: E402 - imports torch
from vitdet_reference import detectron2_state  # noqa: E402

TOLERANCE = 1e-4
SIZE = (44, 60)  # the checkpoint's training size is 40 x 56


def _hf_config():
    return transformers.VitDetConfig(
        hidden_size=36, num_hidden_layers=3, num_attention_heads=3, mlp_ratio=2, image_size=(40, 56),
        pretrain_image_size=32, patch_size=4, window_size=4, window_block_indices=[0, 2],
        use_relative_position_embeddings=True, residual_block_indices=[1], out_features=["stage3"], layer_norm_eps=1e-6,
    )


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The references, a detectron2 `.pkl` of their weights, and the
    backbone converted from it at SIZE."""
    reference = randomize(transformers.VitDetBackbone(_hf_config()), std=0.2)
    pyramid = randomize(SimpleFeaturePyramid(36, 12), seed=1, std=0.3)
    hf_state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
    path = tmp_path_factory.mktemp("vitdet") / "model_final_tiny.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": detectron2_state(hf_state, pyramid), "__author__": "Detectron2 Model Zoo"}, f)
    model = ViTDetBackbone.from_preset(str(path), image_size=SIZE)
    x, x_torch = images((2, *SIZE, 3), seed=3)
    with torch.no_grad():
        plain = reference(x_torch).feature_maps[-1]
        levels = pyramid(plain)
    return {"reference": reference, "model": model, "x": x, "plain": plain, "levels": levels, "pkl": path}


def test_detectron2_pkl_converts_to_the_references(case):
    model = case["model"]
    assert model.global_attention_blocks == (1,) and model.window_size == 4 and model.rel_pos_grid == (10, 14)
    assert model.residual_blocks == (1,) and model.num_heads == 3 and model.pretrain_image_size == 32
    features = model.feature_extractor()(case["x"])
    assert max_abs_diff(features["encoder_output"], case["plain"].permute(0, 2, 3, 1)) <= TOLERANCE
    outputs = model(case["x"])
    assert sorted(outputs) == ["P2", "P3", "P4", "P5", "P6"]
    for level, expected in case["levels"].items():
        assert max_abs_diff(outputs[level], expected.permute(0, 2, 3, 1)) <= TOLERANCE, level
    # Strides patch/4 ... 4 x patch: 11 x 15 -> 44 x 60, 22 x 30, 11 x 15, 5 x 7 (floored), 3 x 4.
    assert [tuple(outputs[f"P{i}"].shape[1:3]) for i in range(2, 7)] == [(44, 60), (22, 30), (11, 15), (5, 7), (3, 4)]


def test_transformers_folder_loads_the_plain_vit(case, tmp_path):
    case["reference"].save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="simple feature pyramid .* keeps its fresh initialisation"):
        model = ViTDetBackbone.from_preset(str(tmp_path / "model.safetensors"), image_size=SIZE)
    features = model.feature_extractor(["encoder_output"])(case["x"])
    assert max_abs_diff(features["encoder_output"], case["plain"].permute(0, 2, 3, 1)) <= TOLERANCE


@pytest.mark.one_backend("torch", "the pickle reader is plain Python: no backend runs in it")
def test_a_pkl_holding_anything_but_arrays_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"backbone.net.pos_embed": Planted()}}, f)
    with pytest.raises(ValueError, match=r"not a pickle of numpy arrays: it names posix\.mkdir"):
        ViTDetBackbone.from_preset(str(path))
    assert not marker.exists()
    path.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(ValueError, match="truncated or not a pickle"):
        ViTDetBackbone.from_preset(str(path))
    with open(path, "wb") as f:
        pickle.dump({"model": {"backbone.net.pos_embed": [1.0, 2.0]}}, f)
    with pytest.raises(ValueError, match="entry 'backbone.net.pos_embed' is a list"):
        ViTDetBackbone.from_preset(str(path))


def test_config_and_keras_file_round_trip(case, tmp_path):
    model = case["model"]
    again = ViTDetBackbone.from_config(model.get_config())
    again.set_weights(model.get_weights())
    path = tmp_path / "vitdet.keras"
    again.save(path)
    loaded = keras.saving.load_model(path)
    for level, value in model(case["x"]).items():
        assert max_abs_diff(loaded(case["x"])[level], value) <= 1e-6


def test_detr_on_vitdet_trains_with_fit():
    backbone = ViTDetBackbone(
        image_shape=(32, 32, 3), patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, window_size=3,
        global_attention_blocks=(1,), pyramid_dim=8,
    )
    model = DETR(
        backbone, num_classes=3, num_queries=4, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1,
        ffn_dim=16, dropout_rate=0.0, bounding_box_format="xyxy",
    )
    assert model._feature_model.output.shape[1:] == (4, 4, 8)  # P5: stride 2 x patch
    shapes, targets = make_shapes(8, 32, max_objects=2, seed=1)
    model.compile(optimizer=keras.optimizers.AdamW(2e-3))
    history = model.fit(
        shapes.astype("float32"), {"labels": targets["labels"], "boxes": targets["boxes"]}, epochs=6, batch_size=4,
        verbose=0,
    )
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0]
    # The levels the transformer does not read get no gradient: frozen.
    assert [layer.name for layer in backbone.layers if not layer.trainable] == ["simfp_2", "simfp_3", "simfp_4"]


@pytest.mark.one_backend("torch", "the casts (float32 position and table resizes, float32 softmax) are keras_vit code, the "
                         "same on every backend; a bfloat16 step compiles anew for 17 to 40 s on the others")
def test_bfloat16_training_is_finite():
    backbone = ViTDetBackbone(
        image_shape=(32, 32, 3), patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, window_size=3,
        global_attention_blocks=(1,), pyramid_dim=8, dtype="mixed_bfloat16",
    )
    model = DETR(
        backbone, num_classes=3, num_queries=4, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1,
        ffn_dim=16, dropout_rate=0.0, bounding_box_format="xyxy", dtype="mixed_bfloat16",
    )
    shapes, targets = make_shapes(4, 32, max_objects=2, seed=2)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    history = model.fit(shapes.astype("float32"), {"labels": targets["labels"], "boxes": targets["boxes"]}, epochs=1,
                        batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert backbone.get_layer("block_0").attention.qkv.kernel.dtype == "float32"


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="image_shape must be a fixed"):
        ViTDetBackbone(image_shape=(None, None, 3))
    with pytest.raises(ValueError, match="num_heads must divide hidden_dim"):
        ViTDetBackbone(image_shape=(32, 32, 3), patch_size=4, hidden_dim=20, num_heads=3)
    with pytest.raises(ValueError, match=r"global_attention_blocks must be block indices in \[0, 2\)"):
        ViTDetBackbone(image_shape=(32, 32, 3), patch_size=4, hidden_dim=8, num_layers=2, num_heads=2,
                       global_attention_blocks=(2,))
    with pytest.raises(ValueError, match="at least two patches"):
        ViTDetBackbone(image_shape=(16, 48, 3), patch_size=16)
    with pytest.raises(TypeError, match="unknown keyword"):
        ViTDetBackbone(window=7)
    with pytest.raises(ValueError, match=r"Unknown argument\(s\) \['num_layers'\]"):
        ViTDetBackbone.from_preset("vitdet_b", load_weights=False, num_layers=3)


@pytest.mark.one_backend("torch", "the command converts with numpy; the conversion numerics run in every tier above")
def test_convert_command_writes_a_backbone_preset(case, tmp_path, capsys):
    from keras_vit import cli

    out = tmp_path / "vitdet_preset"
    assert cli.main(["convert", str(case["pkl"]), str(out), "--image-size", "48"]) == 0
    assert "parameters" in capsys.readouterr().out
    loaded = ViTDetBackbone.from_preset(str(out), image_size=SIZE)
    assert loaded.image_shape == (*SIZE, 3)
    assert max_abs_diff(loaded(case["x"])["P5"], case["levels"]["P5"].permute(0, 2, 3, 1)) <= TOLERANCE
    assert cli.main(["convert", str(case["pkl"]), str(tmp_path / "other"), "--num-classes", "3"]) == 2


@pytest.mark.one_backend("torch", "an input check before any step")
def test_detr_on_a_fixed_size_backbone_names_its_size(tmp_path):
    backbone = ViTDetBackbone(image_shape=(32, 48, 3), patch_size=8, hidden_dim=8, num_layers=1, num_heads=2, pyramid_dim=8)
    model = DETR(backbone, num_classes=2, num_queries=3, hidden_dim=8, num_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=8)
    with pytest.raises(ValueError, match=r"built for 32 x 48 images\. Pad the images .* images.shape=\(1, 40, 40, 3\)"):
        model.predict_detections(np.zeros((1, 40, 40, 3), "float32"))
    assert model.predict_detections(np.zeros((1, 32, 48, 3), "float32"))["boxes"].shape == (1, 3, 4)
    # keras-vit predict: any image is fitted into the backbone's size and padded, with its mask.
    from PIL import Image

    from keras_vit.prediction import predict_files

    path = tmp_path / "tall.png"
    Image.fromarray(np.full((70, 20, 3), 120, "uint8")).save(path)
    record = predict_files(model, [str(path)], str(tmp_path / "out"), score_threshold=0.0, verbose=False)["images"][0]
    assert record["working_size"] == [32, 9] and len(record["detections"]) == 3
    for detection in record["detections"]:
        x0, y0, x1, y1 = detection["box_xyxy"]
        assert -1e-3 <= x0 <= x1 <= 20 + 1e-3 and -1e-3 <= y0 <= y1 <= 70 + 1e-3  # in the original image
    with pytest.raises(ValueError, match="image_size and max_size do not apply"):
        predict_files(model, [str(path)], str(tmp_path / "out"), image_size=800, verbose=False)
