import keras
from keras import ops

from keras_vit.utils.validation import check_pair

# Constants per weight family (REFERENCE.md section 1.5).
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # original ViT, AugReg, HF ViTImageProcessor: [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DeiT and other torchvision-style weights
IMAGENET_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTImagePreprocessor(keras.layers.Layer):
    """Resizes images and normalises pixel values for a ViT preset.

    `x -> (resize(x) * scale - mean) / std`. The default `scale=1/255` expects
    pixels in [0, 255]; `mean=std=0.5` then maps them to [-1, 1] (original ViT
    weights), while the ImageNet mean/std suit DeiT-style weights.

    Args:
        image_size: int or `(H, W)`, the model's input size.
        mean: per-channel mean after scaling (a float or one per channel).
        std: per-channel standard deviation after scaling.
        scale: float multiplied into the pixels first.
        interpolation: `"bilinear"` (HF's ViTImageProcessor) or any
            `keras.ops.image.resize` method. Bilinear gives the same numbers on
            every backend; bicubic does not.
        antialias: bool, passed to the resize.

    Call arguments:
        images: `(B, H_in, W_in, C)` or `(H_in, W_in, C)`, channels last.

    Returns:
        float `(B, H, W, C)` ready for the model.
    """

    def __init__(
        self,
        image_size,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        scale=1.0 / 255.0,
        interpolation="bilinear",
        antialias=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = check_pair("image_size", image_size)
        self.mean = _as_channels("mean", mean)
        self.std = _as_channels("std", std)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive. Received: std={std!r}")
        self.scale = float(scale)
        self.interpolation = interpolation
        self.antialias = bool(antialias)
        # No weights. Marked built so that a model holding it as an attribute
        # counts as built: Keras's JAX predict_on_batch otherwise re-runs the
        # whole model eagerly on every call to build it (2.5x slower).
        self.built = True

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if len(images.shape) not in (3, 4):
            raise ValueError(
                "images must have rank 3 (H, W, C) or 4 (B, H, W, C). "
                f"Received: images.shape={images.shape}"
            )
        if tuple(images.shape[-3:-1]) != self.image_size:
            images = ops.image.resize(
                images,
                self.image_size,
                interpolation=self.interpolation,
                antialias=self.antialias,
            )
        channels = images.shape[-1]
        mean, std = self.mean, self.std
        if len(mean) == 1:
            mean, std = mean * channels, std * channels
        if channels is not None and len(mean) != channels:
            raise ValueError(
                f"mean and std have {len(mean)} values but the images have "
                f"{channels} channels. Received: images.shape={images.shape}"
            )
        mean = ops.convert_to_tensor(mean, dtype=images.dtype)
        std = ops.convert_to_tensor(std, dtype=images.dtype)
        return (images * self.scale - mean) / std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + self.image_size + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_size": self.image_size,
                "mean": self.mean,
                "std": self.std,
                "scale": self.scale,
                "interpolation": self.interpolation,
                "antialias": self.antialias,
            }
        )
        return config


def _as_channels(name, value):
    if isinstance(value, (int, float)):
        return (float(value),)
    try:
        return tuple(float(v) for v in value)
    except TypeError:
        raise TypeError(
            f"{name} must be a float or a sequence of floats, one per channel. "
            f"Received: {name}={value!r}"
        ) from None
