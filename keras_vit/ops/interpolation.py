"""Separable image interpolation as explicit matrices.

Why not `keras.ops.image.resize`: its bicubic kernel differs between backends
(PyTorch's a=-0.75 on torch, Keys' a=-0.5 on JAX; up to 0.32 apart on a 14->24
grid), it has no `align_corners=True`, and its antialiasing differs too. Position
embeddings must resize to the same numbers on every backend and must match the
reference implementations, so each 1-D resize here is a small `(out, in)` matrix
computed in numpy, applied along one axis at a time.

Conventions reproduced (each checked against torch in the tests):

- `bilinear` / `bicubic` with `align_corners=False`: `torch.nn.functional.interpolate`
  (bicubic uses a=-0.75 and replicates edge pixels). HF `interpolate_pos_encoding`.
- `align_corners=True`: corner-aligned sampling, which is also what
  `scipy.ndimage.zoom(order=1)` does in the original ViT checkpoint code.
- `antialias=True`: PIL-style filtering (bicubic a=-0.5, support scaled when
  downsampling, weights renormalised at the borders), as in
  `torch.nn.functional.interpolate(..., antialias=True)` used by timm's
  `resample_abs_pos_embed`.
"""

import numpy as np

INTERPOLATION_METHODS = ("bilinear", "bicubic")


def _cubic(x, a):
    """Keys' cubic convolution kernel with parameter `a`."""
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x <= 1.0, near, np.where(x < 2.0, far, 0.0))


def _linear(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def _check_method(method, align_corners, antialias):
    if method not in INTERPOLATION_METHODS:
        raise ValueError(
            f"method must be one of {INTERPOLATION_METHODS}. Received: method={method!r}"
        )
    if align_corners and antialias:
        raise ValueError(
            "align_corners=True cannot be combined with antialias=True. "
            "Received: align_corners=True, antialias=True; set one of them to False."
        )


def interpolation_matrix(
    in_size, out_size, method="bicubic", align_corners=False, antialias=False
):
    """Returns the `(out_size, in_size)` matrix of a 1-D resize.

    Args:
        in_size: int, length of the input axis.
        out_size: int, length of the output axis.
        method: `"bilinear"` or `"bicubic"`.
        align_corners: bool, map the first and last samples onto each other
            (torch `align_corners=True`, scipy `zoom(order=1)`).
        antialias: bool, PIL-style filtering (torch `antialias=True`).

    Returns:
        float64 numpy array `M` of shape `(out_size, in_size)` such that
        `y = M @ x` resizes a signal `x` of length `in_size`.
    """
    _check_method(method, align_corners, antialias)
    in_size, out_size = int(in_size), int(out_size)
    if in_size < 1 or out_size < 1:
        raise ValueError(
            "in_size and out_size must be positive. "
            f"Received: in_size={in_size}, out_size={out_size}"
        )
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    if in_size == out_size:
        return np.eye(in_size)
    if antialias:
        return _antialias_matrix(in_size, out_size, method)

    out_index = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        source = out_index * scale
    else:
        scale = in_size / out_size
        source = (out_index + 0.5) * scale - 0.5
        if method == "bilinear":
            # torch clamps negative source coordinates for linear modes only.
            source = np.maximum(source, 0.0)
    base = np.floor(source).astype(np.int64)
    frac = source - base
    if method == "bilinear":
        taps = ((0, 1.0 - frac), (1, frac))
    else:
        # torch's bicubic uses a=-0.75; taps at base-1 .. base+2.
        taps = tuple((k, _cubic(frac - k, -0.75)) for k in (-1, 0, 1, 2))
    rows = np.arange(out_size)
    for offset, weight in taps:
        # Out-of-range taps fall back onto the edge sample (replicate padding).
        cols = np.clip(base + offset, 0, in_size - 1)
        np.add.at(matrix, (rows, cols), weight)
    return matrix


def _antialias_matrix(in_size, out_size, method):
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    half_taps = 1.0 if method == "bilinear" else 2.0
    support = half_taps * scale if scale >= 1.0 else half_taps
    inv_scale = 1.0 / scale if scale >= 1.0 else 1.0
    for i in range(out_size):
        center = scale * (i + 0.5)
        start = max(int(center - support + 0.5), 0)
        stop = min(int(center + support + 0.5), in_size)
        offsets = (np.arange(start, stop) - center + 0.5) * inv_scale
        if method == "bilinear":
            weights = _linear(offsets)
        else:
            weights = _cubic(offsets, -0.5)
        total = weights.sum()
        if total != 0.0:
            weights = weights / total
        matrix[i, start:stop] = weights
    return matrix


def resize_grid(grid, size, method="bicubic", align_corners=False, antialias=False):
    """Resizes a `(h, w, D)` numpy grid to `(size[0], size[1], D)`.

    The same matrices as `interpolation_matrix`, so the result does not depend on
    the Keras backend.
    """
    grid = np.asarray(grid)
    if grid.ndim != 3:
        raise ValueError(
            f"grid must have rank 3 (h, w, D). Received: grid.shape={grid.shape}"
        )
    out_h, out_w = (int(s) for s in size)
    rows = interpolation_matrix(grid.shape[0], out_h, method, align_corners, antialias)
    cols = interpolation_matrix(grid.shape[1], out_w, method, align_corners, antialias)
    # (H, h) x (h, w, D) x (W, w) -> (H, W, D)
    out = np.einsum("Hh,hwd,Ww->HWd", rows, grid.astype(np.float64), cols)
    return out.astype(grid.dtype)


def resize_position_embedding(
    embedding,
    source_grid,
    target_grid,
    num_prefix_tokens=1,
    method="bicubic",
    align_corners=False,
    antialias=True,
):
    """Resizes a learned position-embedding table to a new patch grid.

    The prefix rows (the class token) are kept unchanged; only the `h x w` grid
    is interpolated, as in every reference implementation.

    Args:
        embedding: numpy array `(1, P + h*w, D)` or `(P + h*w, D)`.
        source_grid: `(h, w)` of the table.
        target_grid: `(h', w')` wanted.
        num_prefix_tokens: P, the rows that are not part of the grid.
        method, align_corners, antialias: see `interpolation_matrix`. The
            defaults (bicubic, antialias) match timm's `resample_abs_pos_embed`;
            HF `interpolate_pos_encoding` is `antialias=False`.

    Returns:
        numpy array `(1, P + h'*w', D)` (or without the leading axis, as given).
    """
    embedding = np.asarray(embedding)
    squeeze = embedding.ndim == 2
    if squeeze:
        embedding = embedding[None]
    source_h, source_w = (int(s) for s in source_grid)
    target_h, target_w = (int(s) for s in target_grid)
    expected = num_prefix_tokens + source_h * source_w
    if embedding.ndim != 3 or embedding.shape[1] != expected:
        raise ValueError(
            f"embedding must have shape (1, {expected}, D) for source_grid="
            f"{(source_h, source_w)} and num_prefix_tokens={num_prefix_tokens}. "
            f"Received: embedding.shape={embedding.shape}"
        )
    prefix = embedding[:, :num_prefix_tokens]
    # (1, h*w, D) -> (h, w, D)
    grid = embedding[0, num_prefix_tokens:].reshape(source_h, source_w, -1)
    grid = resize_grid(grid, (target_h, target_w), method, align_corners, antialias)
    # (h', w', D) -> (1, h'*w', D)
    grid = grid.reshape(1, target_h * target_w, -1)
    out = np.concatenate([prefix, grid], axis=1)
    return out[0] if squeeze else out


def resize_images(images, size, method="bilinear", align_corners=False):
    """Resizes a `(B, h, w, C)` tensor to `(B, size[0], size[1], C)` in `keras.ops`.

    The same 1-D matrices as `interpolation_matrix`, applied as two matrix
    products, so every backend gives torch's `interpolate(mode=method,
    align_corners=...)` (DPT's fusion blocks and heads upsample with
    `align_corners=True`, which `keras.ops.image.resize` cannot do). The
    input's spatial size must be known when the graph is built.
    """
    from keras import ops

    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(
            "resize_images needs the input's height and width when the graph is built; "
            f"received a tensor of shape {tuple(images.shape)}. Build the model for a fixed image size."
        )
    out_h, out_w = (int(s) for s in size)
    if (out_h, out_w) == (height, width):
        return images
    dtype = images.dtype
    rows = ops.convert_to_tensor(interpolation_matrix(height, out_h, method, align_corners).astype("float32"))
    cols = ops.convert_to_tensor(interpolation_matrix(width, out_w, method, align_corners).astype("float32"))
    x = ops.cast(images, "float32")
    x = ops.einsum("Hh,bhwc->bHwc", rows, x)
    x = ops.einsum("Ww,bHwc->bHWc", cols, x)
    return ops.cast(x, dtype)
