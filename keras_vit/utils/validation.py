"""Argument checks shared by layers and models.

Each check raises a `ValueError` or `TypeError` that names the argument, the value
received and what to pass instead.
"""

import difflib
import numbers


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer. Received: {name}={value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def check_non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0. Received: {name}={value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0. Received: {name}={value!r}")
    return int(value)


def check_rate(name, value):
    """A probability in [0, 1): dropout, attention dropout, drop path."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1). Received: {name}={value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_pair(name, value):
    """An int or a pair of ints, returned as a tuple of two positive ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(
            f"{name} must be an int or a pair of ints. Received: {name}={value!r}"
        )
    return tuple(check_positive_int(name, v) for v in value)


def check_image_shape(image_shape, patch_size, stem_stride=1):
    """`image_shape` is `(H, W, C)` with H and W divisible by the patch size
    (times the stride of a hybrid CNN stem, if any)."""
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        raise ValueError(
            "image_shape must be (height, width, channels), channels last. "
            f"Received: image_shape={image_shape!r}"
        )
    image_shape = tuple(check_positive_int("image_shape", v) for v in image_shape)
    height, width, _ = image_shape
    step = (patch_size[0] * stem_stride, patch_size[1] * stem_stride)
    if height % step[0] or width % step[1]:
        stem = f" times the CNN stem's stride {stem_stride}" if stem_stride > 1 else ""
        raise ValueError(
            f"image_shape must be divisible by patch_size={patch_size}{stem}. Received: "
            f"image_shape={image_shape}. Use a height that is a multiple of "
            f"{step[0]} and a width that is a multiple of {step[1]}, "
            "or resize the images first."
        )
    return image_shape


def check_image_batch(images, image_shape, name="images"):
    """Checks the rank and static shape of an image batch `(B, H, W, C)`."""
    shape = getattr(images, "shape", None)
    if shape is None:
        raise TypeError(
            f"{name} must be an array or tensor of shape (batch, height, width, "
            f"channels). Received: {type(images).__name__}"
        )
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"{name} must have rank 4 (batch, height, width, channels). Received: "
            f"{name}.shape={shape}. For a single image, add a batch axis "
            "(images[None])."
        )
    height, width, channels = image_shape
    if shape[3] is not None and shape[3] != channels:
        raise ValueError(
            f"{name} must have {channels} channels (channels last). Received: "
            f"{name}.shape={shape}. Convert the images to {channels} channels, or "
            f"build the model with image_shape=({height}, {width}, {shape[3]})."
        )
    if (shape[1] is not None and shape[1] != height) or (
        shape[2] is not None and shape[2] != width
    ):
        raise ValueError(
            f"{name} must be {height}x{width} pixels for this model. Received: "
            f"{name}.shape={shape}. Resize the images (the preset's preprocessor "
            "does it) or build the model with image_size="
            f"({shape[1]}, {shape[2]}) to resize the position embeddings."
        )


def check_feature_names(names, available):
    """`names` (a name or a list) as a list, or a ValueError naming the closest one."""
    if isinstance(names, str):
        names = [names]
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(str(name), list(available), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown feature name {name!r}.{hint} Available: {list(available)}")
    return list(names)


# What Keras's own Model/Layer constructors take besides a class's arguments.
_KERAS_KWARGS = ("name", "trainable")


def check_model_kwargs(class_name, kwargs, allowed=_KERAS_KWARGS):
    """Unknown keyword arguments raise: Keras's functional `Model` would
    silently drop them (`ViTBackbone(hiden_dim=32)` built a width-768 model)."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"{class_name} got unknown keyword argument(s) {unknown}. Check the spelling against "
            f"the documented arguments of keras_vit.{class_name}."
        )


def check_mesh_axes(device_mesh, model_parallel_dim_name, data_parallel_dim_name):
    """ValueError unless both names are axes of the `keras.distribution.DeviceMesh`."""
    names = list(device_mesh.axis_names)
    for argument, name in (("model_parallel_dim_name", model_parallel_dim_name),
                           ("data_parallel_dim_name", data_parallel_dim_name)):
        if name not in names:
            raise ValueError(f"{argument} must be an axis of device_mesh (axes {names}). Received: {argument}={name!r}")
