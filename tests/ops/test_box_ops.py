"""Box geometry against transformers' DETR box utilities (torch) and hand-made cases."""

import numpy as np
import pytest

from keras_vit.ops.box_ops import box_area
from keras_vit.ops.box_ops import box_iou
from keras_vit.ops.box_ops import center_xywh_to_xyxy
from keras_vit.ops.box_ops import generalized_box_iou
from keras_vit.ops.box_ops import xyxy_to_center_xywh
from layer_checks import to_np

torch = pytest.importorskip("torch")
detection = pytest.importorskip("transformers.loss.loss_for_object_detection")


def _random_boxes(rng, n):
    centers = rng.uniform(0.1, 0.9, size=(n, 2))
    sizes = rng.uniform(0.0, 0.5, size=(n, 2))
    sizes[0] = 0.0  # a degenerate (zero-area) box
    return np.concatenate([centers, sizes], -1).astype("float32")


def test_format_round_trip():
    boxes = _random_boxes(np.random.default_rng(0), 7)
    np.testing.assert_allclose(to_np(xyxy_to_center_xywh(center_xywh_to_xyxy(boxes))), boxes, atol=1e-6)
    ref = detection.center_to_corners_format(torch.from_numpy(boxes)).numpy()
    np.testing.assert_allclose(to_np(center_xywh_to_xyxy(boxes)), ref, atol=1e-7)


def test_iou_and_giou_match_transformers():
    rng = np.random.default_rng(1)
    a = to_np(center_xywh_to_xyxy(_random_boxes(rng, 6)))
    b = to_np(center_xywh_to_xyxy(_random_boxes(rng, 9)))
    b[0] = a[1]  # an identical pair
    iou, union = box_iou(a[1:], b[1:])
    ref_iou, ref_union = detection.box_iou(torch.from_numpy(a[1:]), torch.from_numpy(b[1:]))
    np.testing.assert_allclose(to_np(iou), ref_iou.numpy(), atol=1e-6)
    np.testing.assert_allclose(to_np(union), ref_union.numpy(), atol=1e-6)
    giou = to_np(generalized_box_iou(a, b))
    ref = detection.generalized_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert giou.shape == (6, 9)
    np.testing.assert_allclose(giou, ref, atol=1e-6)
    np.testing.assert_allclose(giou[1, 0], 1.0, atol=1e-6)


def test_hand_cases_and_batching():
    unit = np.array([[0.0, 0.0, 1.0, 1.0]], "float32")
    shifted = np.array([[0.5, 0.0, 1.5, 1.0], [2.0, 0.0, 3.0, 1.0]], "float32")
    iou, _ = box_iou(unit, shifted)
    np.testing.assert_allclose(to_np(iou), [[1 / 3, 0.0]], atol=1e-6)
    # Disjoint unit boxes 1 apart: hull 3, union 2 -> giou = 0 - 1/3.
    np.testing.assert_allclose(to_np(generalized_box_iou(unit, shifted))[0, 1], -1 / 3, atol=1e-6)
    np.testing.assert_allclose(to_np(box_area(shifted)), [1.0, 1.0])
    # (B, N, 4) x (B, M, 4) -> (B, N, M), each batch item as alone.
    rng = np.random.default_rng(2)
    a = to_np(center_xywh_to_xyxy(rng.uniform(0.2, 0.6, size=(2, 3, 4)).astype("float32")))
    b = to_np(center_xywh_to_xyxy(rng.uniform(0.2, 0.6, size=(2, 5, 4)).astype("float32")))
    batched = to_np(generalized_box_iou(a, b))
    assert batched.shape == (2, 3, 5)
    for i in range(2):
        np.testing.assert_allclose(batched[i], to_np(generalized_box_iou(a[i], b[i])), atol=1e-6)
