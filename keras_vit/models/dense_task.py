"""What the dense-prediction tasks (DPT, Segmenter) share: running at another
input size, and raw images of any size as numpy."""

import keras
import numpy as np

from keras_vit.models.task import Task
from keras_vit.utils.validation import check_pair


class DenseTask(Task):
    """`Task` with `at_image_size`: the model rebuilt for another input size
    (the backbone's `image_shape` and the preprocessor's `image_size` in its
    config), with this model's weights."""

    def at_image_size(self, image_size):
        """This model for `(H, W)` inputs (divisible by the backbone's stride):
        the same architecture with the position embeddings resized as DPT and
        Segmenter resize them for other sizes (bilinear, align_corners=False)
        and this model's current weights. Models are cached per size; each
        call copies the current weights again, so training this model is
        reflected."""
        from keras_vit.presets.registry import transfer_resizing_positions

        size = check_pair("image_size", image_size)
        if size == tuple(self.backbone.image_shape[:2]):
            return self
        cache = self.__dict__.get("_keras_vit_sized")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_keras_vit_sized", cache)  # not tracked as sublayers
        model = cache.get(size)
        if model is None:
            config = self.get_config()
            backbone = config["backbone"]["config"]
            backbone["image_shape"] = (size[0], size[1], backbone["image_shape"][-1])
            if config.get("preprocessor"):
                config["preprocessor"]["config"]["image_size"] = size
            model = type(self).from_config(config)
            cache[size] = model
        transfer_resizing_positions(self, model)
        return model


def image_list(images, channels):
    """Raw images as a list of float32 `(H, W, C)` arrays, checked, and
    whether they came as one `"image"`, a `"batch"` or a `"list"`."""
    if isinstance(images, (list, tuple)):
        arrays, kind = [np.asarray(keras.ops.convert_to_numpy(i)) for i in images], "list"
    else:
        array = np.asarray(keras.ops.convert_to_numpy(images))
        arrays = [array] if array.ndim == 3 else list(array) if array.ndim == 4 else None
        kind = "image" if array.ndim == 3 else "batch"
        if arrays is None:
            raise ValueError(
                "images must be an (H, W, C) image, a (B, H, W, C) batch or a list of images. "
                f"Received: shape {array.shape}"
            )
    if not arrays:
        raise ValueError("images is empty. Pass at least one image.")
    for index, array in enumerate(arrays):
        if array.ndim != 3 or array.shape[-1] != channels or min(array.shape[:2]) < 1:
            raise ValueError(
                f"images[{index}] must be (H, W, {channels}). Received: shape {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise ValueError(f"images[{index}] must hold finite numbers. Received dtype {array.dtype}")
    return [a.astype("float32") for a in arrays], kind


def resize_numpy(array, size, method):
    """`(h, w, C)` -> `(size[0], size[1], C)` with torch's interpolate
    (align_corners=False; bicubic a=-0.75), in numpy."""
    from keras_vit.ops.interpolation import interpolation_matrix

    height, width = array.shape[:2]
    if (height, width) == tuple(size):
        return array
    rows = interpolation_matrix(height, size[0], method, False).astype("float32")
    cols = interpolation_matrix(width, size[1], method, False).astype("float32")
    return np.einsum("Hh,hwc,Ww->HWc", rows, array, cols, optimize=True)
