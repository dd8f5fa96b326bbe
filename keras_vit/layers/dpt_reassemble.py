import keras
from keras import ops

from keras_vit.backend.gelu import gelu
from keras_vit.layers.conv2d import Conv2D
from keras_vit.utils.validation import check_pair
from keras_vit.utils.validation import check_positive_int

READOUT_TYPES = ("ignore", "add", "project")
RESAMPLE_FACTORS = (4, 2, 1, 0.5)


@keras.saving.register_keras_serializable(package="keras_vit")
class DPTReassemble(keras.layers.Layer):
    """One reassemble stage of DPT (Ranftl et al., 2021, section 3): the
    tokens of one transformer block become an image-like feature map.

    1. Readout: the class token is dropped (`"ignore"`), added to every patch
       token (`"add"`), or concatenated to each patch token and projected back
       to the token width by a Dense layer and exact GELU (`"project"`, DPT's
       default).
    2. The patch tokens are laid out on their `(h, w)` grid (the real grid,
       square or not).
    3. A 1x1 convolution to `filters` channels.
    4. Resampling by `factor`: 4 and 2 with a transposed convolution (kernel
       = stride = factor), 1 unchanged, 0.5 with a 3x3 convolution of stride 2
       and padding 1.

    Args:
        filters: int, the stage's width (DPT-Large: 256, 512, 1024, 1024).
        factor: one of 4, 2, 1, 0.5.
        grid_size: `(h, w)`, the patch grid (the model's input size / patch).
        readout: `"ignore"`, `"add"` or `"project"`.

    Call arguments:
        tokens: `(B, 1 + h * w, D)`, the class token first.

    Returns:
        `(B, h * factor, w * factor, filters)` (for 0.5: `ceil(h / 2)`).
    """

    def __init__(self, filters, factor, grid_size, readout="project", **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.grid_size = tuple(check_pair("grid_size", grid_size))
        if factor not in RESAMPLE_FACTORS or isinstance(factor, bool):
            raise ValueError(f"factor must be one of {RESAMPLE_FACTORS}. Received: factor={factor!r}")
        self.factor = factor
        if readout not in READOUT_TYPES:
            raise ValueError(f"readout must be one of {READOUT_TYPES}. Received: readout={readout!r}")
        self.readout = readout
        policy = self.dtype_policy
        self.readout_projection = None
        self.projection = Conv2D(self.filters, 1, dtype=policy, name="projection")
        if factor > 1:
            self.resample = keras.layers.Conv2DTranspose(
                self.filters, factor, strides=factor, dtype=policy, name="resample"
            )
        elif factor == 0.5:
            self.padding = keras.layers.ZeroPadding2D(1, dtype=policy, name="padding")  # torch padding=1
            self.resample = Conv2D(self.filters, 3, strides=2, dtype=policy, name="resample")
        else:
            self.resample = None

    def build(self, input_shape):
        width = input_shape[-1]
        if self.readout == "project":
            self.readout_projection = keras.layers.Dense(width, dtype=self.dtype_policy, name="readout_projection")
            self.readout_projection.build((None, None, 2 * width))
        self.projection.build((None, None, None, width))
        if self.resample is not None:
            self.resample.build((None, None, None, self.filters))
        self.built = True

    def call(self, tokens):
        height, width = self.grid_size
        if tokens.shape[1] is not None and tokens.shape[1] != 1 + height * width:
            raise ValueError(
                f"tokens must hold the class token and a {height}x{width} grid ({1 + height * width} tokens). "
                f"Received: tokens.shape={tuple(tokens.shape)}, grid_size={self.grid_size}"
            )
        class_token, patches = tokens[:, :1], tokens[:, 1:]
        if self.readout == "add":
            patches = patches + class_token
        elif self.readout == "project":
            readout = ops.broadcast_to(class_token, ops.shape(patches))
            patches = gelu(self.readout_projection(ops.concatenate([patches, readout], axis=-1)), approximate=False)
        x = ops.reshape(patches, (-1, height, width, patches.shape[-1]))
        x = self.projection(x)
        if self.factor == 0.5:
            x = self.resample(self.padding(x))
        elif self.resample is not None:
            x = self.resample(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {"filters": self.filters, "factor": self.factor, "grid_size": list(self.grid_size), "readout": self.readout}
        )
        return config
