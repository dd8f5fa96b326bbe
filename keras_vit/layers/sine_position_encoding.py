import math

import keras
from keras import ops

from keras_vit.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class SinePositionEncoding(keras.layers.Layer):
    """DETR's mask-aware 2-D sine position encoding (no weights).

    Positions are the running count of valid pixels along each axis (so padded
    regions of a batch do not shift the real image's encoding), optionally
    normalised to `(0, scale]`; each is encoded with `num_position_features`
    interleaved sines and cosines (`sin` on even channels, `cos` on odd, a pair
    sharing one frequency `temperature ** (2 * (i // 2) / F)`); the y encoding
    comes first, then x.

    Args:
        num_position_features: int, F per axis (DETR: hidden size / 2 = 128).
        temperature: float.
        normalize: bool, divide by the last valid position (DETR: True).
        scale: float, the normalised range (2 pi).

    Call arguments:
        mask: `(B, H, W)`, True (or 1) on valid pixels, False on padding; the
            transformers `pixel_mask` convention (DETR's own code inverts it).

    Returns:
        `(B, H, W, 2F)` float32, channels last.
    """

    def __init__(self, num_position_features=128, temperature=10000.0, normalize=True, scale=None, **kwargs):
        super().__init__(**kwargs)
        self.num_position_features = check_positive_int("num_position_features", num_position_features)
        if self.num_position_features % 2:
            raise ValueError(
                "num_position_features must be even (sine/cosine pairs). "
                f"Received: num_position_features={num_position_features}"
            )
        if scale is not None and not normalize:
            raise ValueError("scale is only used with normalize=True. Received: scale with normalize=False")
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.scale = 2 * math.pi if scale is None else float(scale)
        self.built = True

    def call(self, mask):
        mask = ops.cast(mask, "float32")
        y = ops.cumsum(mask, axis=1)  # (B, H, W), 1-based row index of valid pixels
        x = ops.cumsum(mask, axis=2)  # (B, H, W)
        if self.normalize:
            eps = 1e-6
            y = y / (y[:, -1:, :] + eps) * self.scale
            x = x / (x[:, :, -1:] + eps) * self.scale
        features = self.num_position_features
        exponent = 2.0 * ops.floor(ops.arange(features, dtype="float32") / 2.0) / features
        frequencies = ops.power(self.temperature, exponent)  # (F,)
        return ops.concatenate([self._encode(y, frequencies), self._encode(x, frequencies)], axis=-1)

    def _encode(self, position, frequencies):
        angles = position[..., None] / frequencies  # (B, H, W, F)
        even = ops.sin(angles[..., 0::2])
        odd = ops.cos(angles[..., 1::2])
        # (B, H, W, F/2, 2) -> (B, H, W, F): sin, cos, sin, cos, ...
        stacked = ops.stack([even, odd], axis=-1)
        shape = ops.shape(angles)
        return ops.reshape(stacked, (shape[0], shape[1], shape[2], self.num_position_features))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (2 * self.num_position_features,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_position_features": self.num_position_features,
                "temperature": self.temperature,
                "normalize": self.normalize,
                "scale": self.scale if self.normalize else None,
            }
        )
        return config
