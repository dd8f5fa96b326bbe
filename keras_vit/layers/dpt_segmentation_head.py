import keras
from keras import ops

from keras_vit.layers.conv2d import Conv2D
from keras_vit.ops.interpolation import resize_images
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class DPTSegmentationHead(keras.layers.Layer):
    """DPT's semantic-segmentation head, and its auxiliary head:

    3x3 convolution without bias (same width), BatchNorm, ReLU, Dropout, 1x1
    convolution to `num_classes`, then (main head only) x2 bilinear
    upsampling with `align_corners=True`.

    Args:
        num_classes: int.
        dropout_rate: float (DPT: 0.1).
        upsample: bool, the final x2 upsampling (False for the auxiliary head).

    Call arguments:
        inputs: `(B, H, W, C)`.

    Returns:
        logits `(B, 2H, 2W, num_classes)` (`(B, H, W, num_classes)` without upsampling).
    """

    def __init__(self, num_classes, dropout_rate=0.1, upsample=True, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        self.upsample = bool(upsample)
        policy = self.dtype_policy
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype=policy, name="norm")
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy, name="dropout")
        self.classifier = Conv2D(self.num_classes, 1, dtype=policy, name="classifier")
        self.conv = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.conv = Conv2D(channels, 3, padding="same", use_bias=False, dtype=self.dtype_policy, name="conv")
        self.conv.build(input_shape)
        self.norm.build(input_shape)
        self.classifier.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = ops.relu(self.norm(self.conv(inputs), training=training))
        x = self.classifier(self.dropout(x, training=training))
        if self.upsample:
            x = resize_images(x, (2 * x.shape[1], 2 * x.shape[2]), "bilinear", align_corners=True)
        return x

    def compute_output_shape(self, input_shape):
        scale = 2 if self.upsample else 1
        return (input_shape[0], *(None if s is None else scale * s for s in input_shape[1:3]), self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dropout_rate": self.dropout_rate, "upsample": self.upsample})
        return config
