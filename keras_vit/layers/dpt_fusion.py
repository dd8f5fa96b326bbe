import keras
from keras import ops

from keras_vit.layers.conv2d import Conv2D
from keras_vit.ops.interpolation import resize_images


@keras.saving.register_keras_serializable(package="keras_vit")
class DPTResidualConvUnit(keras.layers.Layer):
    """DPT's pre-activation residual convolution unit:
    `x + [BN](conv3x3(relu([BN](conv3x3(relu(x))))))`.

    Args:
        use_batch_norm: bool, BatchNorm after each convolution (DPT's
            segmentation models); the convolutions then have no bias.
        use_bias: bool or None (default: `not use_batch_norm`, as DPT).

    Call arguments:
        inputs: `(B, H, W, C)`; the convolutions keep C channels.
    """

    def __init__(self, use_batch_norm=False, use_bias=None, **kwargs):
        super().__init__(**kwargs)
        self.use_batch_norm = bool(use_batch_norm)
        self.use_bias = (not self.use_batch_norm) if use_bias is None else bool(use_bias)
        self.conv1 = self.conv2 = self.norm1 = self.norm2 = None

    def build(self, input_shape):
        channels = input_shape[-1]
        policy = self.dtype_policy
        conv = dict(padding="same", use_bias=self.use_bias, dtype=policy)  # 3x3, stride 1: torch padding=1
        self.conv1 = Conv2D(channels, 3, name="conv1", **conv)
        self.conv2 = Conv2D(channels, 3, name="conv2", **conv)
        self.conv1.build(input_shape)
        self.conv2.build(input_shape)
        if self.use_batch_norm:
            # torch BatchNorm2d: eps 1e-5, momentum 0.1 (Keras: 0.9).
            self.norm1 = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype=policy, name="norm1")
            self.norm2 = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype=policy, name="norm2")
            self.norm1.build(input_shape)
            self.norm2.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = self.conv1(ops.relu(inputs))
        if self.use_batch_norm:
            x = self.norm1(x, training=training)
        x = self.conv2(ops.relu(x))
        if self.use_batch_norm:
            x = self.norm2(x, training=training)
        return x + inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"use_batch_norm": self.use_batch_norm, "use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class DPTFusionBlock(keras.layers.Layer):
    """One DPT feature-fusion block (RefineNet-style):

    `x = x + RCU1(skip)` (the skip resized bilinearly to x's size first when
    the two differ, as transformers does for grids that do not halve
    evenly), then `RCU2`, then x2 bilinear upsampling with
    `align_corners=True`, then a 1x1 convolution.

    Args:
        use_batch_norm: bool, for both residual units.
        use_bias: see `DPTResidualConvUnit`.
        align_corners: bool (DPT: True).

    Call arguments:
        inputs: `(B, H, W, C)`, the fused features so far (or the deepest stage).
        skip: optional `(B, H', W', C)`, this stage's features.

    Returns:
        `(B, 2H, 2W, C)`.
    """

    def __init__(self, use_batch_norm=False, use_bias=None, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.use_batch_norm = bool(use_batch_norm)
        self.use_bias = use_bias if use_bias is None else bool(use_bias)
        self.align_corners = bool(align_corners)
        policy = self.dtype_policy
        units = dict(use_batch_norm=self.use_batch_norm, use_bias=self.use_bias, dtype=policy)
        self.residual1 = DPTResidualConvUnit(name="residual1", **units)
        self.residual2 = DPTResidualConvUnit(name="residual2", **units)
        self.projection = None

    def build(self, inputs_shape, skip_shape=None):
        channels = inputs_shape[-1]
        self.residual1.build(inputs_shape)
        self.residual2.build(inputs_shape)
        self.projection = Conv2D(channels, 1, dtype=self.dtype_policy, name="projection")
        self.projection.build(inputs_shape)
        self.built = True

    def call(self, inputs, skip=None, training=None):
        x = inputs
        if skip is not None:
            if tuple(skip.shape[1:3]) != tuple(x.shape[1:3]):
                skip = resize_images(skip, x.shape[1:3], "bilinear", align_corners=False)
            x = x + self.residual1(skip, training=training)
        x = self.residual2(x, training=training)
        x = resize_images(x, (2 * x.shape[1], 2 * x.shape[2]), "bilinear", align_corners=self.align_corners)
        return self.projection(x)

    def compute_output_shape(self, inputs_shape, skip_shape=None):
        height = None if inputs_shape[1] is None else 2 * inputs_shape[1]
        width = None if inputs_shape[2] is None else 2 * inputs_shape[2]
        return (inputs_shape[0], height, width, inputs_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"use_batch_norm": self.use_batch_norm, "use_bias": self.use_bias, "align_corners": self.align_corners}
        )
        return config
