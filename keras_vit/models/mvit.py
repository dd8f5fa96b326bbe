import keras

from keras_vit.backbones.mvit_backbone import MViTBackbone
from keras_vit.models.swin import PooledClassifier


@keras.saving.register_keras_serializable(package="keras_vit")
class MViT(PooledClassifier):
    """MViTv2 image classifier: backbone (ending in its LayerNorm) -> mean
    of the tokens -> dropout -> linear head (timm's `MultiScaleVit`, no
    class token).

    Args:
        backbone: a `keras_vit.MViTBackbone`.
        num_classes: int, K; 0 returns the pooled features.
        head_dropout_rate: float in [0, 1).
        activation: None for logits, or e.g. `"softmax"`.
        preprocessor: optional `keras_vit.layers.ViTImagePreprocessor`
            (the presets: resize to 224, ImageNet mean/std), applied by
            `fit`, `evaluate` and `predict` to raw images.
        dtype: dtype policy.

    Example:
    >>> backbone = MViTBackbone(image_shape=(64, 64, 3), hidden_dim=8, depths=(1, 1), num_heads=1)
    >>> tuple(MViT(backbone, num_classes=5)(keras.ops.zeros((2, 64, 64, 3))).shape)
    (2, 5)
    """

    backbone_class = MViTBackbone
