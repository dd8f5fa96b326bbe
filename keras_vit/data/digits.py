"""scikit-learn's bundled handwritten digits as a small image-classification set.

1,797 real 8x8 grayscale scans (UCI optdigits) ship inside scikit-learn, so the
main job trains and evaluates with no download.
"""

import numpy as np

from keras_vit.ops.interpolation import resize_grid


def load_digits(image_size=16, test_fraction=0.2, seed=0):
    """Returns `(x_train, y_train), (x_test, y_test)`.

    Images are `(N, image_size, image_size, 1)` float32 in [0, 1], upsampled
    bilinearly from 8x8; the split is stratified by class with a fixed seed.

    Args:
        image_size: int, side of the returned images (8 keeps the originals).
        test_fraction: float in (0, 1), held-out share of each class.
        seed: int, the split's random seed.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1). Received: test_fraction={test_fraction}")
    data = sklearn_digits()
    images = data.images.astype("float32") / 16.0
    labels = data.target.astype("int32")
    if image_size != 8:
        # (N, 8, 8) -> (8, 8, N) so each image is one channel of resize_grid.
        images = resize_grid(images.transpose(1, 2, 0), (image_size, image_size), "bilinear")
        images = images.transpose(2, 0, 1)
    images = np.clip(images, 0.0, 1.0)[..., None]
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        test = rng.choice(index, size=int(round(test_fraction * len(index))), replace=False)
        test_mask[test] = True
    return (images[~test_mask], labels[~test_mask]), (images[test_mask], labels[test_mask])
