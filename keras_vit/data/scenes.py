"""Procedurally generated indoor scenes with exact depth and per-pixel classes.

The embedded default of the dense-prediction recipes (depth and
segmentation; no download). Each image is a ray-cast render of a room seen by
a pinhole camera: a textured floor (checkerboard of two random colours and
random square size), a textured back wall (stripes of random period and
angle) at a random distance, and 1 to `max_objects` boxes and spheres of
random size, colour and position standing on the floor, lit by a random
directional light (Lambert shading plus ambient), with pixel noise. Camera
height, downward pitch and the wall's distance vary per image.

Every pixel's depth (the camera-frame z, as NYU Depth v2 and KITTI store it,
in metres) and class (`SCENE_CLASSES`) come from the same ray cast as its
colour, at the pixel centre, so targets match the image exactly. A fixed seed
gives the same data on every machine (numpy's `default_rng`).
"""

import numpy as np

SCENE_CLASSES = ("wall", "floor", "box", "sphere")


def _rotation_x(angle):
    """Pitch: turns the camera's +z (forward) down by `angle` radians (y is up)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _box_hits(origin, directions, low, high):
    """Slab test of rays `origin + t * directions` against an axis-aligned box:
    `(t, normals)` of the entry point (`inf` where missed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = (low - origin) / directions
        t1 = (high - origin) / directions
    near, far = np.minimum(t0, t1), np.maximum(t0, t1)
    near = np.where(np.isnan(near), -np.inf, near)
    far = np.where(np.isnan(far), np.inf, far)
    entry, exit_ = near.max(-1), far.min(-1)
    hit = (entry <= exit_) & (entry > 1e-6)
    axis = near.argmax(-1)
    normals = np.zeros(directions.shape)
    rows = np.arange(directions.shape[0])
    normals[rows, axis] = -np.sign(directions[rows, axis])
    return np.where(hit, entry, np.inf), normals


def _sphere_hits(origin, directions, centre, radius):
    offset = origin - centre
    a = np.sum(directions * directions, -1)
    b = 2.0 * directions @ offset
    c = offset @ offset - radius * radius
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    hit = (disc >= 0) & (t > 1e-6)
    t = np.where(hit, t, np.inf)
    points = origin + np.where(hit, t, 0.0)[:, None] * directions
    return t, (points - centre) / radius


def _render(rng, size, max_objects):
    height = rng.uniform(1.2, 1.8)
    pitch = np.radians(rng.uniform(8.0, 22.0))
    wall = rng.uniform(5.0, 9.0)
    focal = 0.9 * size
    centre = (size - 1) / 2.0
    v, u = np.mgrid[0:size, 0:size].reshape(2, -1).astype("float64")
    # Camera-frame rays with z = 1: the hit's camera-frame depth is its t.
    camera = np.stack([(u - centre) / focal, -(v - centre) / focal, np.ones_like(u)], -1)
    directions = camera @ _rotation_x(pitch).T
    origin = np.array([0.0, height, 0.0])

    count = size * size
    depth = np.full(count, np.inf)
    labels = np.zeros(count, "int32")
    normals = np.zeros((count, 3))
    colours = np.zeros((count, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(directions[:, 1] < -1e-9, -height / directions[:, 1], np.inf)
        t_wall = np.where(directions[:, 2] > 1e-9, wall / directions[:, 2], np.inf)

    def take(t, label, normal, colour):
        closer = t < depth
        depth[closer] = t[closer]
        labels[closer] = label
        normals[closer] = normal[closer] if np.ndim(normal) == 2 else normal
        colours[closer] = colour[closer] if np.ndim(colour) == 2 else colour

    # Wall: stripes of random period and angle between two random colours.
    points = origin + np.where(np.isfinite(t_wall), t_wall, 0)[:, None] * directions
    angle, period = rng.uniform(0, np.pi), rng.uniform(0.3, 1.2)
    phase = (np.cos(angle) * points[:, 0] + np.sin(angle) * points[:, 1]) / period
    a, b = rng.uniform(40, 230, (2, 3))
    take(t_wall, 0, np.array([0.0, 0.0, -1.0]), np.where((np.floor(phase) % 2 == 0)[:, None], a, b))
    # Floor: a checkerboard of random square size.
    points = origin + np.where(np.isfinite(t_floor), t_floor, 0)[:, None] * directions
    square = rng.uniform(0.3, 1.0)
    parity = (np.floor(points[:, 0] / square) + np.floor(points[:, 2] / square)) % 2 == 0
    a, b = rng.uniform(40, 230, (2, 3))
    take(t_floor, 1, np.array([0.0, 1.0, 0.0]), np.where(parity[:, None], a, b))
    # Objects standing on the floor, in front of the wall.
    for _ in range(int(rng.integers(1, max_objects + 1))):
        z = rng.uniform(2.0, wall - 1.0)
        x = rng.uniform(-0.45, 0.45) * z
        colour = rng.uniform(30, 255, 3)
        if rng.uniform() < 0.5:
            half = rng.uniform(0.2, 0.6, 2)
            tall = rng.uniform(0.3, 1.4)
            t, normal = _box_hits(origin, directions, np.array([x - half[0], 0.0, z - half[1]]),
                                  np.array([x + half[0], tall, z + half[1]]))
            take(t, 2, normal, colour)
        else:
            radius = rng.uniform(0.25, 0.7)
            t, normal = _sphere_hits(origin, directions, np.array([x, radius, z]), radius)
            take(t, 3, normal, colour)
    light = rng.normal(size=3)
    light[1] = abs(light[1]) + 0.5  # from above
    light /= np.linalg.norm(light)
    shade = 0.45 + 0.55 * np.clip(normals @ light, 0.0, 1.0)
    image = colours * shade[:, None] + rng.normal(0, 4, (count, 3))
    shape = (size, size)
    return (np.clip(image, 0, 255).astype("uint8").reshape(*shape, 3), depth.reshape(shape).astype("float32"),
            labels.reshape(shape))


def make_scenes(num_images, image_size=64, max_objects=3, seed=0):
    """Generates the dataset.

    Args:
        num_images: int.
        image_size: int, square side in pixels.
        max_objects: int, boxes and spheres per image are uniform in
            `[1, max_objects]` (they may hide each other).
        seed: int.

    Returns:
        `(images, depth, labels)`: uint8 `(N, S, S, 3)`, float32 `(N, S, S)`
        camera-frame depth in metres (every pixel valid; within 0.5 to 12 m)
        and int32 `(N, S, S)` indices into
        `SCENE_CLASSES`.
    """
    for name, value in (("num_images", num_images), ("image_size", image_size), ("max_objects", max_objects)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
    rng = np.random.default_rng(seed)
    images = np.zeros((num_images, image_size, image_size, 3), "uint8")
    depth = np.zeros((num_images, image_size, image_size), "float32")
    labels = np.zeros((num_images, image_size, image_size), "int32")
    for i in range(num_images):
        images[i], depth[i], labels[i] = _render(rng, image_size, max_objects)
    return images, depth, labels
