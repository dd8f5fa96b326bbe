import numbers

import keras

from keras_vit.backbones.vit_backbone import ViTBackbone
from keras_vit.models.task import Task
from keras_vit.layers.token_pooling import TokenPooling
from keras_vit.utils.serialization import model_config_with_backbone
from keras_vit.utils.serialization import task_from_config
from keras_vit.utils.validation import check_image_batch
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class ViT(Task, keras.Model):
    """Vision Transformer image classifier: backbone -> pool -> [pre-logits] -> head.

    Args:
        backbone: a `keras_vit.ViTBackbone`.
        num_classes: int, K. 0 gives no head: the model returns the pooled
            (pre-logits) features, like timm's `num_classes=0`.
        pooling: `"token"` (class token) or `"gap"` (mean of the patch tokens).
        representation_size: None, or the width of the pre-logits layer
            `Dense + tanh` of the ImageNet-21k checkpoints (HF's `pooler`).
        head_dropout_rate: float in [0, 1), dropout before the head.
        activation: None for logits, or e.g. `"softmax"`.
        preprocessor: optional `keras_vit.layers.ViTImagePreprocessor`, saved
            with the preset. `fit`, `evaluate` and `predict` apply it to their
            raw images (pixels as the preprocessor documents them: [0, 255]
            for the photograph presets); calling the model directly skips it.
        dtype: dtype policy.

    Call arguments:
        images: `(B, H, W, C)` preprocessed images (`model.preprocessor(raw)`).

    Returns:
        `(B, K)` logits (or `(B, D)` features when `num_classes=0`).

    Example:
    >>> backbone = ViTBackbone(image_shape=(30, 30, 3), patch_size=3,
    ...     hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37)
    >>> model = ViT(backbone, num_classes=10)
    >>> tuple(model(keras.ops.zeros((2, 30, 30, 3))).shape)
    (2, 10)
    """

    def __init__(
        self,
        backbone,
        num_classes=1000,
        pooling="token",
        representation_size=None,
        head_dropout_rate=0.0,
        activation=None,
        preprocessor=None,
        dtype=None,
        **kwargs,
    ):
        if not isinstance(backbone, ViTBackbone):
            raise TypeError(
                "backbone must be a keras_vit.ViTBackbone. Received: "
                f"backbone={type(backbone).__name__}"
            )
        check_model_kwargs("ViT", kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 0:
            raise ValueError(
                "num_classes must be a non-negative int (0 for no head). "
                f"Received: num_classes={num_classes!r}"
            )
        num_classes = int(num_classes)
        if representation_size is not None and (
            isinstance(representation_size, bool)
            or not isinstance(representation_size, numbers.Integral)
            or representation_size < 1
        ):
            raise ValueError(
                "representation_size must be None or a positive int. "
                f"Received: representation_size={representation_size!r}"
            )
        representation_size = None if representation_size is None else int(representation_size)
        head_dropout_rate = check_rate("head_dropout_rate", head_dropout_rate)

        # === Layers ===
        pool = TokenPooling(
            pooling, backbone.num_prefix_tokens, dtype=dtype, name="pooling"
        )
        pre_logits = None
        if representation_size is not None:
            pre_logits = keras.layers.Dense(
                representation_size, activation="tanh", dtype=dtype, name="pre_logits"
            )
        head_dropout = keras.layers.Dropout(head_dropout_rate, dtype=dtype, name="head_dropout")
        head = None
        if num_classes:
            head = keras.layers.Dense(
                num_classes,
                activation=activation,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=dtype,
                name="head",
            )

        # === Functional model ===
        inputs = keras.Input(shape=backbone.image_shape, name="images")
        x = pool(backbone(inputs))
        if pre_logits is not None:
            x = pre_logits(x)
        if head is not None:
            x = head(head_dropout(x))
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.num_classes = num_classes
        self.pooling = pooling
        self.representation_size = representation_size
        self.head_dropout_rate = head_dropout_rate
        self.activation = activation
        self.preprocessor = preprocessor

    def __call__(self, inputs, *args, **kwargs):
        check_image_batch(inputs, self.backbone.image_shape, name="images")
        return super().__call__(inputs, *args, **kwargs)

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """`compile` with defaults for fine-tuning a classifier.

        `"auto"` gives AdamW (learning rate 1e-4, weight decay 0.05, gradient
        clipping at global norm 1.0), sparse categorical cross-entropy on
        integer labels (from logits unless `activation="softmax"`) and
        accuracy. Any argument can be given explicitly instead.
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(
                learning_rate=1e-4, weight_decay=0.05, global_clipnorm=1.0
            )
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=self.activation != "softmax"
            )
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def get_config(self):
        return {
            **model_config_with_backbone(self),
            "num_classes": self.num_classes,
            "pooling": self.pooling,
            "representation_size": self.representation_size,
            "head_dropout_rate": self.head_dropout_rate,
            "activation": self.activation,
            "preprocessor": (
                None
                if self.preprocessor is None
                else keras.saving.serialize_keras_object(self.preprocessor)
            ),
        }

    @classmethod
    def from_config(cls, config):
        return task_from_config(cls, config)

    def check_raw_inputs(self, x):
        super().check_raw_inputs(x)
        shape = getattr(x, "shape", None)
        if shape is None:
            return  # a dataset or generator: checked batch by batch in the step
        if self.preprocessor is None:
            check_image_batch(x, self.backbone.image_shape, name="images")
            return
        if len(shape) != 4:
            raise ValueError(
                f"images must have rank 4 (batch, height, width, channels). Received: images.shape={tuple(shape)}. "
                "For a single image, add a batch axis (images[None])."
            )
        channels = self.backbone.image_shape[-1]
        if shape[-1] is not None and shape[-1] != channels:
            raise ValueError(
                f"images must have {channels} channels (channels last). Received: images.shape={tuple(shape)}."
            )

    @classmethod
    def from_preset(cls, preset, num_classes=None, image_size=None, load_weights=True, **overrides):
        """Builds a classifier from a preset name, a preset directory, a
        checkpoint file or `hf://org/name`.

        Args:
            preset: a name from `ViT.presets` (e.g. `"vit_b16"`), a directory
                written by `save_to_preset`, an original `.npz`, timm or
                transformers checkpoint file, or `hf://org/name`.
            num_classes: int; when it differs from the preset's, the head is
                re-initialised and every other weight is kept.
            image_size: int or `(H, W)`; when it differs from the preset's, the
                position embeddings are resized (bicubic, antialiased, as timm).
            load_weights: bool, load the preset's weights. The converted weights
                are looked up in the keras_vit cache (`$KERAS_HOME/keras_vit`).
            **overrides: backbone or head arguments to change, e.g.
                `drop_path_rate=0.1` or `pooling="gap"`; `num_heads` for a timm
                file with no `config.json` beside it; `dtype`.

        Example:
        >>> model = ViT.from_preset("vit_ti16", num_classes=10, load_weights=False)
        >>> model.num_classes
        10
        """
        if num_classes is not None:
            overrides["num_classes"] = num_classes
        if image_size is not None:
            overrides["image_size"] = image_size
        return super().from_preset(preset, load_weights=load_weights, **overrides)
