import numbers

import keras

from keras_vit.backbones.swin_backbone import SwinBackbone
from keras_vit.models.task import Task
from keras_vit.utils.serialization import model_config_with_backbone
from keras_vit.utils.serialization import task_from_config
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_rate


class PooledClassifier(Task, keras.Model):
    """The classifier of the hierarchical backbones: backbone (ending in its
    LayerNorm) -> global average pool -> dropout -> linear head. Subclasses
    name their backbone class (`backbone_class`)."""

    backbone_class = None

    def __init__(
        self, backbone, num_classes=1000, head_dropout_rate=0.0, activation=None, preprocessor=None, dtype=None, **kwargs
    ):
        name = type(self).__name__
        if not isinstance(backbone, self.backbone_class):
            raise TypeError(
                f"backbone must be a keras_vit.{self.backbone_class.__name__}. Received: backbone={type(backbone).__name__}"
            )
        check_model_kwargs(name, kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 0:
            raise ValueError(
                f"num_classes must be a non-negative int (0 for no head). Received: num_classes={num_classes!r}"
            )
        num_classes = int(num_classes)
        head_dropout_rate = check_rate("head_dropout_rate", head_dropout_rate)
        inputs = keras.Input(shape=backbone.image_shape, name="images")
        x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="pooling")(backbone(inputs))
        if num_classes:
            x = keras.layers.Dropout(head_dropout_rate, dtype=dtype, name="head_dropout")(x)
            x = keras.layers.Dense(
                num_classes, activation=activation, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=dtype, name="head",
            )(x)
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.head_dropout_rate = head_dropout_rate
        self.activation = activation
        self.preprocessor = preprocessor

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """`compile` with fine-tuning defaults: AdamW (learning rate 1e-4,
        weight decay 0.05) with gradients clipped at global norm 5 (the
        official Swin recipe's `CLIP_GRAD`), sparse categorical
        cross-entropy and accuracy. Any argument can be given explicitly."""
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.05, global_clipnorm=5.0)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=self.activation != "softmax")
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def check_raw_inputs(self, x):
        super().check_raw_inputs(x)
        shape = getattr(x, "shape", None)
        if shape is None:
            return
        if len(shape) != 4:
            raise ValueError(
                f"images must have rank 4 (batch, height, width, channels). Received: images.shape={tuple(shape)}. "
                "For a single image, add a batch axis (images[None])."
            )
        channels = self.backbone.image_shape[-1]
        if shape[-1] is not None and shape[-1] != channels:
            raise ValueError(f"images must have {channels} channels (channels last). Received: images.shape={tuple(shape)}.")

    def get_config(self):
        return {
            **model_config_with_backbone(self),
            "num_classes": self.num_classes,
            "head_dropout_rate": self.head_dropout_rate,
            "activation": self.activation,
            "preprocessor": None if self.preprocessor is None else keras.saving.serialize_keras_object(self.preprocessor),
        }

    @classmethod
    def from_config(cls, config):
        return task_from_config(cls, config)

    @classmethod
    def from_preset(cls, preset, num_classes=None, image_size=None, load_weights=True, **overrides):
        """The classifier from a preset name, a preset directory, a
        checkpoint file or `hf://org/name`.

        Args:
            num_classes: int; a new head (zero-initialised) when it differs.
            image_size: int or `(H, W)` (Swin: also `(None, None)`).
            **overrides: backbone or head arguments (e.g. `drop_path_rate`).
        """
        if num_classes is not None:
            overrides["num_classes"] = num_classes
        if image_size is not None:
            overrides["image_size"] = image_size
        return super().from_preset(preset, load_weights=load_weights, **overrides)


@keras.saving.register_keras_serializable(package="keras_vit")
class Swin(PooledClassifier):
    """Swin Transformer image classifier: backbone (ending in its LayerNorm)
    -> global average pool -> dropout -> linear head (timm's
    `SwinTransformer`, transformers' `SwinForImageClassification`).

    Args:
        backbone: a `keras_vit.SwinBackbone`.
        num_classes: int, K; 0 returns the pooled `(B, 8D)` features.
        head_dropout_rate: float in [0, 1).
        activation: None for logits, or e.g. `"softmax"`.
        preprocessor: optional `keras_vit.layers.ViTImagePreprocessor`
            (the Swin presets: resize to 224 or 384, ImageNet mean/std).
            `fit`, `evaluate` and `predict` apply it to raw images.
        dtype: dtype policy.

    Call arguments:
        images: `(B, H, W, C)` preprocessed images.

    Returns:
        `(B, K)` logits.

    Example:
    >>> backbone = SwinBackbone(image_shape=(64, 64, 3), hidden_dim=12,
    ...     depths=(2, 2), num_heads=(3, 3), window_size=4)
    >>> tuple(Swin(backbone, num_classes=5)(keras.ops.zeros((2, 64, 64, 3))).shape)
    (2, 5)
    """

    backbone_class = SwinBackbone
