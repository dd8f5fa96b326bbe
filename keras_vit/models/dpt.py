"""DPT (Ranftl, Bochkovskiy and Koltun, 2021): dense prediction from a ViT
tapped at four depths, with reassemble and fusion blocks.

    images -> ViTBackbone -> tokens of 4 blocks (or, for DPT-Hybrid, 2 ResNet
    stage maps and 2 blocks) -> DPTReassemble per tap (readout, (h, w) grid,
    1x1 conv, resample x4 / x2 / x1 / x0.5) -> 3x3 conv to the fusion width ->
    4 DPTFusionBlocks, deepest first, each upsampling x2 -> head.

`DPTDepthEstimator` ends in the depth head (relative inverse depth, or metric
depth `1 / (scale * x + shift)` for the KITTI / NYU releases);
`DPTImageSegmenter` in the segmentation head and, for training, the
auxiliary head. transformers' `DPTForSemanticSegmentation` applies its
auxiliary head to the last fused map (the paper: the penultimate one; the
original code defines it but never calls it): keras_vit follows transformers.
"""

import keras
from keras import ops

from keras_vit.backbones.vit_backbone import ViTBackbone
from keras_vit.layers.dpt_depth_head import DPTDepthHead
from keras_vit.layers.dpt_fusion import DPTFusionBlock
from keras_vit.layers.dpt_reassemble import DPTReassemble
from keras_vit.layers.dpt_segmentation_head import DPTSegmentationHead
from keras_vit.models.task import Task
from keras_vit.utils.serialization import model_config_with_backbone
from keras_vit.utils.serialization import task_from_config
from keras_vit.utils.validation import check_image_batch
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate

# The taps of the releases (0-based blocks; ResNet stages by keras_vit's names).
DPT_TAPS = {
    "large": ("block_5", "block_11", "block_17", "block_23"),
    "base": ("block_2", "block_5", "block_8", "block_11"),
    "hybrid": ("stage_0", "stage_1", "block_8", "block_11"),
}
DPT_NECK_WIDTHS = {
    "large": (256, 512, 1024, 1024),
    "base": (96, 192, 384, 768),
    "hybrid": (256, 512, 768, 768),
}


def _check_taps(backbone, taps, neck_widths, reassemble_factors):
    if not isinstance(backbone, ViTBackbone):
        raise TypeError(f"backbone must be a keras_vit.ViTBackbone. Received: {type(backbone).__name__}")
    taps, neck_widths, factors = tuple(taps), tuple(neck_widths), tuple(reassemble_factors)
    if not (len(taps) == len(neck_widths) == len(factors)) or not taps:
        raise ValueError(
            "taps, neck_widths and reassemble_factors must have the same (non-zero) length. Received: "
            f"taps={taps}, neck_widths={neck_widths}, reassemble_factors={factors}"
        )
    unknown = [t for t in taps if t not in backbone.feature_names or t == "encoder_norm"]
    if unknown:
        raise ValueError(
            f"taps {unknown} are not features of this backbone. Available: {backbone.feature_names[:-1]} "
            "(DPT taps block outputs before the final norm, and a hybrid's ResNet stages)."
        )
    return taps, tuple(check_positive_int("neck_widths", w) for w in neck_widths), factors


def dpt_fused_features(
    backbone, inputs, taps, neck_widths, reassemble_factors, readout, fusion_width, use_batch_norm, dtype
):
    """The DPT neck on symbolic `inputs`: the fused maps, shallowest last."""
    features = backbone.feature_extractor(list(taps))(inputs)
    grid = backbone.grid_size
    maps = []
    for index, (tap, width, factor) in enumerate(zip(taps, neck_widths, reassemble_factors)):
        x = features[tap]
        if len(x.shape) == 3:  # tokens: reassemble
            x = DPTReassemble(width, factor, grid, readout=readout, dtype=dtype, name=f"reassemble_{index}")(x)
        elif x.shape[-1] != width:  # a ResNet stage map goes in as it is (DPT-Hybrid)
            raise ValueError(f"tap {tap!r} has {x.shape[-1]} channels but neck_widths[{index}]={width}.")
        x = keras.layers.Conv2D(
            fusion_width, 3, padding="same", use_bias=False, dtype=dtype, name=f"neck_conv_{index}"
        )(x)
        maps.append(x)
    fused, outputs = None, []
    for index, x in enumerate(reversed(maps)):
        block = DPTFusionBlock(use_batch_norm=use_batch_norm, dtype=dtype, name=f"fusion_{index}")
        fused = block(x) if fused is None else block(fused, x)
        outputs.append(fused)
    return outputs


class _DPTTask(Task, keras.Model):
    """What both DPT tasks share: the backbone, the neck, config and checks."""

    def _neck(self, backbone, taps, neck_widths, reassemble_factors, readout, fusion_width, use_batch_norm, dtype):
        taps, neck_widths, factors = _check_taps(backbone, taps, neck_widths, reassemble_factors)
        inputs = keras.Input(shape=backbone.image_shape, name="images")
        fused = dpt_fused_features(
            backbone, inputs, taps, neck_widths, factors, readout, check_positive_int("fusion_width", fusion_width),
            bool(use_batch_norm), dtype,
        )
        return inputs, fused, (taps, neck_widths, factors)

    def _set_neck_config(self, backbone, arrangement, readout, fusion_width, use_batch_norm, preprocessor):
        self.backbone = backbone
        self.taps, self.neck_widths, self.reassemble_factors = (list(a) for a in arrangement)
        self.readout = readout
        self.fusion_width = int(fusion_width)
        self.use_batch_norm = bool(use_batch_norm)
        self.preprocessor = preprocessor

    def __call__(self, inputs, *args, **kwargs):
        check_image_batch(inputs, self.backbone.image_shape, name="images")
        return super().__call__(inputs, *args, **kwargs)

    def _neck_config(self):
        return {
            **model_config_with_backbone(self),
            "taps": list(self.taps),
            "neck_widths": list(self.neck_widths),
            "reassemble_factors": list(self.reassemble_factors),
            "readout": self.readout,
            "fusion_width": self.fusion_width,
            "use_batch_norm": self.use_batch_norm,
            "preprocessor": (
                None if self.preprocessor is None else keras.saving.serialize_keras_object(self.preprocessor)
            ),
        }

    @classmethod
    def from_config(cls, config):
        return task_from_config(cls, config)


@keras.saving.register_keras_serializable(package="keras_vit")
class DPTDepthEstimator(_DPTTask):
    """DPT for monocular depth: images -> `(B, H', W')` depth map.

    Args:
        backbone: a `keras_vit.ViTBackbone` (plain or hybrid).
        taps: feature names of the backbone to reassemble (see `DPT_TAPS`).
        neck_widths: the reassembled width of each tap.
        reassemble_factors: resampling of each tap (DPT: 4, 2, 1, 0.5).
        readout: `"project"` (DPT), `"add"` or `"ignore"`.
        fusion_width: int, the fusion blocks' width (DPT: 256).
        use_batch_norm: bool, BatchNorm in the fusion blocks' residual units.
        add_projection: bool, see `DPTDepthHead`.
        depth_scale: None for relative inverse depth (MiDaS), or a float for
            metric depth `1 / max(scale * x + shift, 1e-8)` (DPT's KITTI and
            NYU releases).
        depth_shift: None, or the float `shift` above.
        preprocessor: optional layer mapping raw images to the backbone's input.
        dtype: dtype policy.

    Returns (call): `(B, H', W')`, H' = 16 x the patch grid's height for
    DPT's sizes (the input size when the grid divides evenly).
    """

    def __init__(
        self,
        backbone,
        taps=DPT_TAPS["base"],
        neck_widths=DPT_NECK_WIDTHS["base"],
        reassemble_factors=(4, 2, 1, 0.5),
        readout="project",
        fusion_width=256,
        use_batch_norm=False,
        add_projection=False,
        depth_scale=None,
        depth_shift=None,
        preprocessor=None,
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("DPTDepthEstimator", kwargs)
        if (depth_scale is None) != (depth_shift is None):
            raise ValueError(
                "depth_scale and depth_shift go together (metric depth = 1 / (scale * x + shift)). "
                f"Received: depth_scale={depth_scale!r}, depth_shift={depth_shift!r}"
            )
        inputs, fused, arrangement = self._neck(
            backbone, taps, neck_widths, reassemble_factors, readout, fusion_width, use_batch_norm, dtype
        )
        depth = DPTDepthHead(add_projection=add_projection, dtype=dtype, name="depth_head")(fused[-1])
        if depth_scale is not None:
            depth = _MetricDepth(depth_scale, depth_shift, dtype=dtype, name="metric_depth")(depth)
        super().__init__(inputs=inputs, outputs=depth, dtype=dtype, **kwargs)
        self._set_neck_config(backbone, arrangement, readout, fusion_width, use_batch_norm, preprocessor)
        self.add_projection = bool(add_projection)
        self.depth_scale = None if depth_scale is None else float(depth_scale)
        self.depth_shift = None if depth_shift is None else float(depth_shift)

    def get_config(self):
        return {
            **self._neck_config(),
            "add_projection": self.add_projection,
            "depth_scale": self.depth_scale,
            "depth_shift": self.depth_shift,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class _MetricDepth(keras.layers.Layer):
    """`1 / max(scale * x + shift, 1e-8)`: inverse depth to metric depth (DPT's KITTI/NYU releases)."""

    def __init__(self, scale, shift, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.shift = float(scale), float(shift)

    def call(self, inputs):
        return 1.0 / ops.maximum(self.scale * inputs + self.shift, 1e-8)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "shift": self.shift})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class DPTImageSegmenter(_DPTTask):
    """DPT for semantic segmentation: images -> `{"logits", "aux_logits"}`.

    Args:
        backbone: a `keras_vit.ViTBackbone` (plain or hybrid).
        num_classes: int (ADE20K: 150).
        taps: see `DPTDepthEstimator` (also `neck_widths`,
            `reassemble_factors`, `readout` and `fusion_width`).
        neck_widths: see `DPTDepthEstimator`.
        reassemble_factors: see `DPTDepthEstimator`.
        readout: see `DPTDepthEstimator`.
        fusion_width: see `DPTDepthEstimator`.
        use_batch_norm: bool (DPT's segmentation models: True).
        dropout_rate: float, before the classifiers (DPT: 0.1).
        auxiliary_head: bool, add the auxiliary head's `"aux_logits"`.
        preprocessor: see `DPTDepthEstimator`.
        dtype: dtype policy.

    Returns (call): `{"logits": (B, H', W', K)}` and, with the auxiliary head,
    `"aux_logits": (B, H'/2, W'/2, K)`.
    """

    def __init__(
        self,
        backbone,
        num_classes=150,
        taps=DPT_TAPS["base"],
        neck_widths=DPT_NECK_WIDTHS["base"],
        reassemble_factors=(4, 2, 1, 0.5),
        readout="project",
        fusion_width=256,
        use_batch_norm=True,
        dropout_rate=0.1,
        auxiliary_head=True,
        preprocessor=None,
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("DPTImageSegmenter", kwargs)
        num_classes = check_positive_int("num_classes", num_classes)
        dropout_rate = check_rate("dropout_rate", dropout_rate)
        inputs, fused, arrangement = self._neck(
            backbone, taps, neck_widths, reassemble_factors, readout, fusion_width, use_batch_norm, dtype
        )
        outputs = {"logits": DPTSegmentationHead(num_classes, dropout_rate, dtype=dtype, name="head")(fused[-1])}
        if auxiliary_head:
            outputs["aux_logits"] = DPTSegmentationHead(
                num_classes, dropout_rate, upsample=False, dtype=dtype, name="auxiliary_head"
            )(fused[-1])
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)
        self._set_neck_config(backbone, arrangement, readout, fusion_width, use_batch_norm, preprocessor)
        self.num_classes = num_classes
        self.dropout_rate = dropout_rate
        self.auxiliary_head = bool(auxiliary_head)

    def get_config(self):
        return {
            **self._neck_config(),
            "num_classes": self.num_classes,
            "dropout_rate": self.dropout_rate,
            "auxiliary_head": self.auxiliary_head,
        }
