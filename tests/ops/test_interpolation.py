"""Interpolation matrices against torch.nn.functional.interpolate and scipy."""

import numpy as np
import pytest
import scipy.ndimage

from keras_vit.ops.interpolation import interpolation_matrix
from keras_vit.ops.interpolation import resize_grid
from keras_vit.ops.interpolation import resize_position_embedding

torch = pytest.importorskip("torch")


def _torch_resize(grid, size, mode, align_corners, antialias):
    x = torch.from_numpy(grid.transpose(2, 0, 1)[None].astype(np.float64))
    kwargs = {} if mode == "nearest" else {"align_corners": align_corners}
    out = torch.nn.functional.interpolate(x, size=size, mode=mode, antialias=antialias, **kwargs)
    return out[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align_corners, antialias", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("source, target", [((7, 5), (12, 9)), ((14, 14), (24, 24)), ((9, 11), (4, 6))])
def test_matches_torch(method, align_corners, antialias, source, target):
    grid = np.random.default_rng(0).normal(size=source + (3,))
    expected = _torch_resize(grid, target, method, align_corners, antialias)
    out = resize_grid(grid, target, method, align_corners, antialias)
    np.testing.assert_allclose(out, expected, atol=1e-10)


def test_align_corners_bilinear_is_scipy_zoom_order_1():
    grid = np.random.default_rng(1).normal(size=(7, 7, 2))
    expected = scipy.ndimage.zoom(grid, (12 / 7, 12 / 7, 1), order=1)
    out = resize_grid(grid, (12, 12), "bilinear", align_corners=True)
    np.testing.assert_allclose(out, expected, atol=1e-10)


def test_rows_sum_to_one_and_identity():
    for method in ("bilinear", "bicubic"):
        m = interpolation_matrix(5, 13, method)
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(interpolation_matrix(6, 6), np.eye(6))


def test_position_embedding_resize_keeps_prefix():
    table = np.random.default_rng(2).normal(size=(1, 1 + 16, 5)).astype("float32")
    out = resize_position_embedding(table, (4, 4), (6, 8))
    assert out.shape == (1, 49, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], table[:, 0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: interpolation_matrix(4, 5, "nearest"), "method must be one of"),
        (lambda: interpolation_matrix(4, 5, align_corners=True, antialias=True), "align_corners"),
        (lambda: interpolation_matrix(0, 5), "in_size"),
        (lambda: resize_grid(np.zeros((4, 4)), (2, 2)), "rank 3"),
        (lambda: resize_position_embedding(np.zeros((1, 10, 3)), (3, 3), (4, 4), 0), r"\(1, 9, D\)"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
