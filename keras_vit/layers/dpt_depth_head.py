import keras
from keras import ops

from keras_vit.layers.conv2d import Conv2D
from keras_vit.ops.interpolation import resize_images


@keras.saving.register_keras_serializable(package="keras_vit")
class DPTDepthHead(keras.layers.Layer):
    """DPT's monocular depth head on the last fusion output:

    3x3 convolution to half the width, x2 bilinear upsampling
    (`align_corners=True`), 3x3 convolution to 32, ReLU, 1x1 convolution to
    1, ReLU. The output is relative inverse depth (disparity), non-negative.

    Args:
        add_projection: bool, a 3x3 convolution and ReLU first (transformers'
            `add_projection`; not in the original releases).
        non_negative: bool, the final ReLU (DPT: True).

    Call arguments:
        inputs: `(B, H, W, C)`.

    Returns:
        `(B, 2H, 2W)`.
    """

    def __init__(self, add_projection=False, non_negative=True, **kwargs):
        super().__init__(**kwargs)
        self.add_projection = bool(add_projection)
        self.non_negative = bool(non_negative)
        self.projection = self.conv1 = self.conv2 = self.conv3 = None

    def build(self, input_shape):
        channels = input_shape[-1]
        policy = self.dtype_policy
        if self.add_projection:
            self.projection = Conv2D(channels, 3, padding="same", dtype=policy, name="projection")
            self.projection.build(input_shape)
        self.conv1 = Conv2D(channels // 2, 3, padding="same", dtype=policy, name="conv1")
        self.conv1.build(input_shape)
        self.conv2 = Conv2D(32, 3, padding="same", dtype=policy, name="conv2")
        self.conv2.build((None, None, None, channels // 2))
        self.conv3 = Conv2D(1, 1, dtype=policy, name="conv3")
        self.conv3.build((None, None, None, 32))
        self.built = True

    def call(self, inputs):
        x = inputs
        if self.add_projection:
            x = ops.relu(self.projection(x))
        x = self.conv1(x)
        x = resize_images(x, (2 * x.shape[1], 2 * x.shape[2]), "bilinear", align_corners=True)
        x = self.conv3(ops.relu(self.conv2(x)))
        if self.non_negative:
            x = ops.relu(x)
        return x[..., 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(None if s is None else 2 * s for s in input_shape[1:3]))

    def get_config(self):
        config = super().get_config()
        config.update({"add_projection": self.add_projection, "non_negative": self.non_negative})
        return config
