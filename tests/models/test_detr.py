"""DETR equals transformers' DetrForObjectDetection (outputs and every loss term) and trains in model.fit."""

import keras
import numpy as np
import pytest

from detr_reference import DECODER_LAYERS
from detr_reference import NUM_CLASSES
from detr_reference import NUM_QUERIES
from detr_reference import keras_detr
from detr_reference import padded_batch
from detr_reference import pixel_values
from detr_reference import reference_detr
from detr_reference import state_of
from detr_reference import tiny_config
from keras_vit.backbones.resnet_backbone import ResNetBackbone
from keras_vit.models.detr import DETR
from keras_vit.models.detr import image_sizes_from_mask
from reference_models import max_abs_diff
from reference_models import to_numpy

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
loss_module = pytest.importorskip("transformers.loss.loss_for_object_detection")

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    return reference_detr()


def _hf_outputs(reference, images, mask, **kwargs):
    with torch.no_grad():
        return reference(
            pixel_values=pixel_values(images, mask), pixel_mask=torch.from_numpy(mask.astype("int64")), **kwargs
        )


def test_outputs_match_transformers(reference):
    model = keras_detr(state_of(reference))
    images, mask = padded_batch()
    ours = model({"images": images, "pixel_mask": mask})
    theirs = _hf_outputs(reference, images, mask, output_hidden_states=True)
    assert ours["logits"].shape == (2, NUM_QUERIES, NUM_CLASSES + 1)
    assert ours["boxes"].shape == (2, NUM_QUERIES, 4)
    assert ours["aux_logits"].shape == (2, DECODER_LAYERS - 1, NUM_QUERIES, NUM_CLASSES + 1)
    assert max_abs_diff(ours["logits"], theirs.logits) <= TOLERANCE
    assert max_abs_diff(ours["boxes"], theirs.pred_boxes) <= TOLERANCE
    # Auxiliary outputs: the shared LayerNorm and heads on each earlier decoder
    # layer's output (the original DETR's definition).
    with torch.no_grad():
        for i in range(DECODER_LAYERS - 1):
            hidden = reference.model.decoder.layernorm(theirs.decoder_hidden_states[i + 1])
            assert max_abs_diff(ours["aux_logits"][:, i], reference.class_labels_classifier(hidden)) <= TOLERANCE
            boxes = reference.bbox_predictor(hidden).sigmoid()
            assert max_abs_diff(ours["aux_boxes"][:, i], boxes) <= TOLERANCE


def test_images_without_mask_equal_a_full_mask(reference):
    model = keras_detr(state_of(reference))
    images, _ = padded_batch()
    full = np.ones(images.shape[:3], bool)
    assert max_abs_diff(model(images)["logits"], model({"images": images, "pixel_mask": full})["logits"]) == 0.0


def _targets(seed=0):
    """Two images of padded targets: one with 3 objects (one degenerate, zero
    width), one with none; boxes rel_center_xywh."""
    rng = np.random.default_rng(seed)
    labels = np.full((3, 4), -1, "int32")
    boxes = np.zeros((3, 4, 4), "float32")
    labels[0, :3] = rng.integers(0, NUM_CLASSES, 3)
    centres = rng.uniform(0.3, 0.7, (3, 2))
    sizes = rng.uniform(0.1, 0.4, (3, 2))
    sizes[2, 0] = 0.0  # degenerate: zero width
    boxes[0, :3] = np.concatenate([centres, sizes], axis=1)
    labels[2, :2] = rng.integers(0, NUM_CLASSES, 2)
    boxes[2, :2] = np.concatenate([rng.uniform(0.3, 0.7, (2, 2)), rng.uniform(0.1, 0.4, (2, 2))], axis=1)
    return labels, boxes


def _hf_labels(labels, boxes):
    return [
        {
            "class_labels": torch.from_numpy(labels[b][labels[b] >= 0].astype("int64")),
            "boxes": torch.from_numpy(boxes[b][labels[b] >= 0]),
        }
        for b in range(len(labels))
    ]


@pytest.mark.parametrize("matching", ["host", "ops"])
def test_loss_terms_match_transformers(matching):
    """Every term (last layer and each auxiliary layer) and the weighted total
    equal transformers' ForObjectDetectionLoss on the same predictions."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(DECODER_LAYERS, 3, NUM_QUERIES, NUM_CLASSES + 1)).astype("float32") * 2
    boxes = 1 / (1 + np.exp(-rng.normal(size=(DECODER_LAYERS, 3, NUM_QUERIES, 4)))).astype("float32")
    labels, target_boxes = _targets()
    config = tiny_config(auxiliary_loss=True)
    loss, loss_dict, _ = loss_module.ForObjectDetectionLoss(
        torch.from_numpy(logits[-1]), _hf_labels(labels, target_boxes), "cpu", torch.from_numpy(boxes[-1]), config,
        outputs_class=torch.from_numpy(logits), outputs_coord=torch.from_numpy(boxes),
    )
    model = DETR(
        ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(8, 8, 8, 8)), num_classes=NUM_CLASSES,
        num_queries=NUM_QUERIES, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=DECODER_LAYERS,
        ffn_dim=16, bounding_box_format="rel_center_xywh", matching=matching,
    )
    y_pred = {
        "logits": logits[-1], "boxes": boxes[-1],
        "aux_logits": logits[:-1].transpose(1, 0, 2, 3), "aux_boxes": boxes[:-1].transpose(1, 0, 2, 3),
    }
    terms = model.set_loss(None, {"labels": labels, "boxes": target_boxes}, y_pred)
    expected = {k: float(v) for k, v in loss_dict.items()}
    assert sorted(expected) == sorted(k for k in terms if k != "loss")
    for name, value in expected.items():
        assert abs(float(to_numpy(terms[name])) - value) <= TOLERANCE, name
    assert abs(float(to_numpy(terms["loss"])) - float(loss)) <= TOLERANCE


def test_model_loss_matches_a_transformers_forward_with_labels(reference):
    """The end-to-end path: pixel boxes in a padded batch, converted with each
    image's own size, give transformers' loss on its normalised targets."""
    model = keras_detr(state_of(reference), bounding_box_format="xyxy")
    images, mask = padded_batch()
    labels, boxes = _targets()
    labels, boxes = labels[:2], boxes[:2]
    theirs = _hf_outputs(reference, images, mask, labels=_hf_labels(labels, boxes))
    sizes = to_numpy(image_sizes_from_mask(mask))  # (B, 2) height, width
    scale = np.concatenate([sizes[:, ::-1], sizes[:, ::-1]], axis=1)[:, None, :]
    xyxy = np.concatenate([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1) * scale
    x = {"images": images, "pixel_mask": mask}
    terms = model.set_loss(x, {"labels": labels, "boxes": xyxy}, model(x))
    for name in ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error"):
        assert abs(float(to_numpy(terms[name])) - float(theirs.loss_dict[name])) <= TOLERANCE, name


def _tiny_model(**kwargs):
    backbone = ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(16, 16, 32, 32))
    defaults = dict(
        num_classes=3, num_queries=6, hidden_dim=32, num_heads=4, encoder_layers=1, decoder_layers=2, ffn_dim=32,
        dropout_rate=0.0, bounding_box_format="rel_center_xywh",
    )
    return DETR(backbone, **{**defaults, **kwargs})


def _fit_data(n=4):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n, 64, 64, 3)).astype("float32")
    labels = np.full((n, 3), -1, "int32")
    boxes = np.zeros((n, 3, 4), "float32")
    for i in range(1, n):  # image 0 has no objects
        labels[i, :2] = rng.integers(0, 3, 2)
        boxes[i, :2] = np.concatenate([rng.uniform(0.3, 0.7, (2, 2)), rng.uniform(0.1, 0.3, (2, 2))], axis=1)
    boxes[1, 1, 3] = 0.0  # a degenerate (zero-height) box
    return images, {"labels": labels, "boxes": boxes}


@pytest.mark.parametrize("matching", ["host", "ops"])
def test_fit_trains_with_empty_images_and_degenerate_boxes(matching):
    model = _tiny_model(matching=matching)
    model.compile(keras.optimizers.Adam(1e-3))
    images, targets = _fit_data()
    history = model.fit(images, targets, batch_size=2, epochs=8, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    for name in ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error", "aux_loss"):
        assert name in history.history and np.isfinite(history.history[name][-1])
    logs = model.evaluate(images, targets, batch_size=2, verbose=0, return_dict=True)
    assert np.isfinite(logs["loss"]) and "loss_giou" in logs


def test_mixed_precision_keeps_the_loss_in_float32():
    model = _tiny_model(dtype="mixed_bfloat16")
    images, targets = _fit_data()
    outputs = model(images[:2])
    dtype = keras.backend.standardize_dtype
    assert dtype(outputs["logits"].dtype) == "float32" and dtype(outputs["boxes"].dtype) == "float32"
    terms = model.set_loss(images[:2], {k: v[:2] for k, v in targets.items()}, outputs)
    assert {dtype(v.dtype) for v in terms.values()} == {"float32"}
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(images, targets, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_every_trainable_weight_gets_a_gradient():
    from training_utils import gradients

    model = _tiny_model()
    images, targets = _fit_data()
    model(images[:2])

    def loss_fn(y, y_pred):
        return model.set_loss(images[:2], y, y_pred)["loss"]

    grads = gradients(model, images[:2], {k: v[:2] for k, v in targets.items()}, loss_fn)
    assert len(grads) == len(model.trainable_variables)
    dead = {v.path.split("/", 1)[1] for v, g in zip(model.trainable_variables, grads) if g is None or not np.any(to_numpy(g))}
    # Inherent to DETR: the first decoder layer's self-attention sees zero
    # queries, so its values are the value bias alone (zero at init) and every
    # query gets the same vector; that sublayer and its norm's gain are inert.
    assert all(
        name.startswith("decoder_layer_0/self_attention/") or name == "decoder_layer_0/self_attention_norm/gamma"
        for name in dead
    ), dead
    assert len(dead) < 10
    # The frozen BatchNorms stay frozen.
    assert all("bn" not in v.path and "downsample_bn" not in v.path for v in model.trainable_variables)


def test_post_process_matches_transformers(reference):
    """Scores, labels and pixel boxes for images of different sizes equal
    transformers' post_process_object_detection, up to the order of equal scores."""
    processor = transformers.DetrImageProcessor()
    model = keras_detr(state_of(reference))
    images, mask = padded_batch()
    outputs = model({"images": images, "pixel_mask": mask})
    sizes = np.array([[480, 640], [350, 500]])  # each image's original size
    ours = {k: to_numpy(v) for k, v in model.post_process(outputs, sizes, score_threshold=0.0).items()}
    hf_outputs = _hf_outputs(reference, images, mask)
    theirs = processor.post_process_object_detection(hf_outputs, threshold=0.0, target_sizes=torch.from_numpy(sizes))
    for b in range(2):
        order = torch.argsort(theirs[b]["scores"], descending=True, stable=True).numpy()
        np.testing.assert_allclose(ours["scores"][b], theirs[b]["scores"].numpy()[order], atol=TOLERANCE)
        np.testing.assert_array_equal(ours["labels"][b], theirs[b]["labels"].numpy()[order])
        np.testing.assert_allclose(ours["boxes"][b], theirs[b]["boxes"].numpy()[order], atol=1e-3, rtol=1e-5)


def test_predict_detections_thresholds_and_pads():
    model = _tiny_model(bounding_box_format="xyxy")
    images, _ = _fit_data()
    mask = np.ones(images.shape[:3], bool)
    mask[1, 40:] = False
    detections = model.predict_detections(images, mask, score_threshold=0.5)
    assert detections["boxes"].shape == (4, 6, 4)
    dropped = detections["scores"] < 0.5
    assert np.all(detections["labels"][dropped] == -1)
    kept = detections["labels"] >= 0
    # Boxes are pixels of each image's unpadded extent (image 1 is 40 x 64).
    assert np.all(detections["boxes"][1][kept[1]][:, [1, 3]] <= 40 + 1e-3)


def test_save_and_load_round_trip(tmp_path):
    model = _tiny_model()
    images, _ = _fit_data()
    expected = model(images)
    path = str(tmp_path / "detr.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == model.get_config()
    assert max_abs_diff(restored(images)["boxes"], expected["boxes"]) <= 1e-6


def test_bad_arguments():
    backbone = ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(8, 8, 8, 8))
    with pytest.raises(TypeError, match="backbone must be a keras.Model"):
        DETR("resnet50")
    with pytest.raises(ValueError, match="bounding_box_format"):
        DETR(backbone, bounding_box_format="corners")
    with pytest.raises(ValueError, match="matching must be one of"):
        DETR(backbone, matching="greedy")
    model = _tiny_model()
    images, targets = _fit_data()
    with pytest.raises(ValueError, match='"boxes"'):
        model.set_loss(images, {"classes": targets["labels"]}, model(images))
    with pytest.raises(ValueError, match="pixel_mask"):
        model({"images": images, "mask": images[..., 0]})
    with pytest.raises(ValueError, match="sample_weight"):
        model.compute_loss(images, targets, model(images), sample_weight=np.ones(4))


def test_keras_augmentation_layers_plug_in():
    """Targets in the Keras bounding-box convention go through Keras's own
    augmentation (RandomFlip with bounding_box_format) straight into fit."""
    images, targets = _fit_data()
    images = np.concatenate([images] * 4)  # 16 images: some are flipped, some not
    targets = {k: np.concatenate([v] * 4) for k, v in targets.items()}
    size = images.shape[1]
    half = targets["boxes"][..., 2:] / 2
    xyxy = np.concatenate([targets["boxes"][..., :2] - half, targets["boxes"][..., :2] + half], -1) * size
    flip = keras.layers.RandomFlip("horizontal", bounding_box_format="xyxy", seed=3)
    augmented = flip({"images": images, "bounding_boxes": {"boxes": xyxy, "labels": targets["labels"]}}, training=True)
    new_images = to_numpy(augmented["images"])
    boxes = to_numpy(augmented["bounding_boxes"]["boxes"])
    flipped = np.array([np.allclose(new_images[i], images[i][:, ::-1]) for i in range(len(images))])
    assert 0 < flipped.sum() < len(images)
    real = targets["labels"] >= 0
    mirrored = np.stack([size - xyxy[..., 2], xyxy[..., 1], size - xyxy[..., 0], xyxy[..., 3]], -1)
    expected = np.where(flipped[:, None, None], mirrored, xyxy)
    np.testing.assert_allclose(boxes[real], expected[real], atol=1e-3)
    model = _tiny_model(bounding_box_format="xyxy")
    model.compile(keras.optimizers.Adam(1e-3))
    y = {"boxes": boxes, "labels": to_numpy(augmented["bounding_boxes"]["labels"])}
    history = model.fit(new_images, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
