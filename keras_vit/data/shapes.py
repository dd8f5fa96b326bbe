"""A procedurally generated detection dataset: coloured shapes on noisy backgrounds.

The embedded default of the detection recipe (no download): every image holds
1 to `max_objects` filled rectangles, ellipses and triangles of random size,
colour and position (overlaps allowed), over a random smooth background with
pixel noise. Targets are in the Keras bounding-box convention: pixel `xyxy`
boxes and int labels, padded with label -1. A fixed seed gives the same data
on every machine.
"""

import numpy as np

SHAPE_CLASSES = ("rectangle", "ellipse", "triangle")


def _draw(canvas, kind, box, colour, rng):
    x0, y0, x1, y1 = box
    height, width = canvas.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    ys, xs = ys + 0.5, xs + 0.5  # pixel centres
    if kind == "rectangle":
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    elif kind == "ellipse":
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    else:  # triangle: apex on the top edge, base on the bottom edge
        apex = rng.uniform(x0, x1)
        t = np.clip((ys - y0) / (y1 - y0), 0, 1)
        inside = (ys >= y0) & (ys <= y1) & (xs >= apex + (x0 - apex) * t) & (xs <= apex + (x1 - apex) * t)
    canvas[inside] = colour
    rows, cols = np.nonzero(inside)
    # The tight box of the drawn pixels (pixel edges), so targets match the image exactly.
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], "float32")


def make_shapes(num_images, image_size=64, max_objects=3, min_size=0.2, max_size=0.5, seed=0):
    """Generates the dataset.

    Args:
        num_images: int.
        image_size: int, square side in pixels.
        max_objects: int, objects per image are uniform in [1, max_objects].
        min_size, max_size: object side as a fraction of the image.
        seed: int.

    Returns:
        `(images, targets)`: uint8 `(N, S, S, 3)` and a dict with `"boxes"`
        `(N, max_objects, 4)` float32 pixel `xyxy` and `"labels"`
        `(N, max_objects)` int32 (-1 on padding).
    """
    for name, value in (("num_images", num_images), ("image_size", image_size), ("max_objects", max_objects)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
    if not 0 < min_size <= max_size <= 1:
        raise ValueError(
            f"Need 0 < min_size <= max_size <= 1. Received: min_size={min_size}, max_size={max_size}"
        )
    rng = np.random.default_rng(seed)
    images = np.zeros((num_images, image_size, image_size, 3), "uint8")
    boxes = np.zeros((num_images, max_objects, 4), "float32")
    labels = np.full((num_images, max_objects), -1, "int32")
    ramp = np.linspace(0, 1, image_size)[:, None, None]
    for i in range(num_images):
        top, bottom = rng.uniform(0, 120, 3), rng.uniform(0, 120, 3)
        canvas = top + (bottom - top) * ramp  # (S, 1, 3) vertical gradient
        canvas = np.broadcast_to(canvas, (image_size, image_size, 3)).copy()
        for j in range(rng.integers(1, max_objects + 1)):
            kind = int(rng.integers(len(SHAPE_CLASSES)))
            w, h = rng.uniform(min_size, max_size, 2) * image_size
            x0, y0 = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
            colour = rng.uniform(130, 255, 3)
            boxes[i, j] = _draw(canvas, SHAPE_CLASSES[kind], (x0, y0, x0 + w, y0 + h), colour, rng)
            labels[i, j] = kind
        canvas += rng.normal(0, 8, canvas.shape)
        images[i] = np.clip(canvas, 0, 255).astype("uint8")
    return images, {"boxes": boxes, "labels": labels}
