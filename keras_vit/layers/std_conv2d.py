import keras
from keras import ops

from keras_vit.layers.conv2d import Conv2D


@keras.saving.register_keras_serializable(package="keras_vit")
class StdConv2D(Conv2D):
    """Conv2D with weight standardisation (Qiao et al., 2019), as in BiT and R50+ViT.

    Each output filter is standardised over `(kh, kw, C_in)` before the
    convolution: `w <- (w - mean) / sqrt(var + epsilon)` (biased variance), so
    the stored kernel is the raw parameter and conversion copies it unchanged.
    Padding defaults to `"same"`, TF-style (the extra pixel on the bottom/right),
    which is what the original JAX hybrid and timm's `StdConv2dSame` use. No bias.

    Args:
        filters, kernel_size, strides: as `keras.layers.Conv2D`.
        epsilon: float; 1e-8 in timm's hybrid ViTs.
        padding: `"same"` or `"valid"`.

    Call arguments:
        inputs: `(B, H, W, C_in)`.

    Returns:
        `(B, H', W', filters)`.
    """

    def __init__(self, filters, kernel_size, strides=1, epsilon=1e-8, padding="same", **kwargs):
        kwargs.pop("use_bias", None)
        super().__init__(
            filters, kernel_size, strides=strides, padding=padding, use_bias=False, **kwargs
        )
        if not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise ValueError(f"epsilon must be a positive float. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    def convolution_op(self, inputs, kernel):
        # Standardise in float32: the statistics of small kernels are sensitive.
        kernel = ops.cast(kernel, "float32")
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        variance = ops.var(kernel, axis=(0, 1, 2), keepdims=True)
        kernel = (kernel - mean) * ops.rsqrt(variance + self.epsilon)
        return super().convolution_op(inputs, ops.cast(kernel, inputs.dtype))

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        for key in ("use_bias", "bias_initializer", "bias_regularizer", "bias_constraint"):
            config.pop(key, None)
        return config
