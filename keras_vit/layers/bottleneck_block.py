import keras

from keras_vit.layers.std_conv2d import StdConv2D
from keras_vit.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class BottleneckBlock(keras.layers.Layer):
    """ResNet bottleneck of the R50+ViT hybrid (BiT layout, not pre-activation).

    ```
    y = relu(gn1(conv1_1x1(x)))
    y = relu(gn2(conv2_3x3(y, stride)))     # the stride sits on the 3x3 conv
    y = gn3(conv3_1x1(y))
    out = relu(y + shortcut(x))             # shortcut: gn(conv_1x1(x, stride)) when shapes change
    ```

    All convolutions are weight-standardised and bias-free.

    Args:
        filters: int, output channels (4x the bottleneck width).
        strides: int, 1 or 2.
        project: bool, use the 1x1 projection shortcut (first block of a stage).
        norm_epsilon: float, GroupNorm epsilon.
        groups: int, GroupNorm groups.

    Call arguments:
        inputs: `(B, H, W, C)`.

    Returns:
        `(B, H / strides, W / strides, filters)`.
    """

    def __init__(self, filters, strides=1, project=False, norm_epsilon=1e-5, groups=32, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        if self.filters % 4:
            raise ValueError(f"filters must be a multiple of 4. Received: filters={filters}")
        self.strides = check_positive_int("strides", strides)
        self.project = bool(project)
        self.norm_epsilon = float(norm_epsilon)
        self.groups = check_positive_int("groups", groups)
        mid = self.filters // 4
        policy = self.dtype_policy

        def norm(name):
            return keras.layers.GroupNormalization(
                groups=self.groups, epsilon=self.norm_epsilon, dtype=policy, name=name
            )

        self.conv1 = StdConv2D(mid, 1, dtype=policy, name="conv1")
        self.norm1 = norm("norm1")
        self.conv2 = StdConv2D(mid, 3, strides=self.strides, dtype=policy, name="conv2")
        self.norm2 = norm("norm2")
        self.conv3 = StdConv2D(self.filters, 1, dtype=policy, name="conv3")
        self.norm3 = norm("norm3")
        if self.project:
            self.downsample_conv = StdConv2D(self.filters, 1, strides=self.strides, dtype=policy, name="downsample_conv")
            self.downsample_norm = norm("downsample_norm")

    def build(self, input_shape):
        batch, height, width, _ = input_shape
        mid = self.filters // 4
        self.conv1.build(input_shape)
        self.norm1.build((batch, height, width, mid))
        self.conv2.build((batch, height, width, mid))
        self.norm2.build((batch, None, None, mid))
        self.conv3.build((batch, None, None, mid))
        self.norm3.build((batch, None, None, self.filters))
        if self.project:
            self.downsample_conv.build(input_shape)
            self.downsample_norm.build((batch, None, None, self.filters))
        elif input_shape[-1] != self.filters or self.strides != 1:
            raise ValueError(
                "A block that changes the channel count or the resolution needs "
                f"project=True. Received: input_shape={input_shape}, filters="
                f"{self.filters}, strides={self.strides}"
            )

    def call(self, inputs):
        shortcut = inputs
        if self.project:
            shortcut = self.downsample_norm(self.downsample_conv(inputs))
        x = keras.activations.relu(self.norm1(self.conv1(inputs)))
        x = keras.activations.relu(self.norm2(self.conv2(x)))
        x = self.norm3(self.conv3(x))
        return keras.activations.relu(x + shortcut)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "strides": self.strides,
                "project": self.project,
                "norm_epsilon": self.norm_epsilon,
                "groups": self.groups,
            }
        )
        return config
