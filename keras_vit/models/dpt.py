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
import numpy as np
from keras import ops

from keras_vit.backbones.vit_backbone import ViTBackbone
from keras_vit.layers.conv2d import Conv2D
from keras_vit.layers.dpt_depth_head import DPTDepthHead
from keras_vit.layers.dpt_fusion import DPTFusionBlock
from keras_vit.layers.dpt_reassemble import DPTReassemble
from keras_vit.layers.dpt_segmentation_head import DPTSegmentationHead
from keras_vit.models.dense_task import DenseTask
from keras_vit.models.dense_task import image_list
from keras_vit.models.dense_task import resize_numpy
from keras_vit.presets.dpt_presets import DPT_NECK_WIDTHS
from keras_vit.presets.dpt_presets import DPT_TAPS
from keras_vit.utils.serialization import model_config_with_backbone
from keras_vit.utils.serialization import task_from_config
from keras_vit.utils.validation import check_image_batch
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate



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
        x = Conv2D(
            fusion_width, 3, padding="same", use_bias=False, dtype=dtype, name=f"neck_conv_{index}"
        )(x)
        maps.append(x)
    fused, outputs = None, []
    for index, x in enumerate(reversed(maps)):
        block = DPTFusionBlock(use_batch_norm=use_batch_norm, dtype=dtype, name=f"fusion_{index}")
        fused = block(x) if fused is None else block(fused, x)
        outputs.append(fused)
    return outputs


class _DPTTask(DenseTask, keras.Model):
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

    # ------------------------------------------------------ any input size

    def working_size(self, height, width, multiple_of=32):
        """`(h, w)` DPT runs an `height x width` image at: the model's size
        scaled as little as possible with the aspect ratio kept, each side
        rounded to a multiple of `multiple_of` (the original transform's
        `keep_aspect_ratio=True, ensure_multiple_of=32, resize_method="minimal"`),
        at least one multiple."""
        multiple_of = check_positive_int("multiple_of", multiple_of)
        target_h, target_w = self.backbone.image_shape[:2]
        scale_h, scale_w = target_h / height, target_w / width
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h
        return tuple(
            max(multiple_of, int(np.round(scale * side / multiple_of)) * multiple_of)
            for scale, side in ((scale_h, height), (scale_w, width))
        )

    def _predict_dense(self, images, multiple_of, batch_size, verbose, finish):
        """Runs raw images of any sizes at their working sizes; each
        prediction, an `(H', W', C)` float map, is resized back to its image's
        size (bicubic, align_corners=False) and given to `finish`. Returns the
        maps shaped as the input was: one, a batch or a list."""
        batch_size = check_positive_int("batch_size", batch_size)
        arrays, kind = image_list(images, self.backbone.image_shape[-1])
        by_size = {}
        for index, image in enumerate(arrays):
            by_size.setdefault(self.working_size(*image.shape[:2], multiple_of), []).append(index)
        maps = [None] * len(arrays)
        progress = keras.utils.Progbar(len(arrays), verbose=int(bool(verbose))) if verbose else None
        for size, indices in by_size.items():
            model = self.at_image_size(size)
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                batch = np.stack([resize_numpy(arrays[i], size, "bicubic") for i in chunk])
                result = model.predict_on_batch(batch)
                if isinstance(result, dict):
                    result = result["logits"]
                result = np.asarray(keras.ops.convert_to_numpy(result), "float32")
                for i, value in zip(chunk, result):
                    value = value if value.ndim == 3 else value[..., None]
                    maps[i] = finish(resize_numpy(value, arrays[i].shape[:2], "bicubic"))
                if progress is not None:
                    progress.add(len(chunk))
        return maps if kind == "list" else maps[0] if kind == "image" else np.stack(maps)


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

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Keras's `compile`, with DPT's defaults: `loss=None` gives MiDaS's
        `ScaleShiftInvariantLoss` (targets: `(B, H, W)` disparity, 0 where
        invalid) and `metrics=None` reports its two terms (`ssi_data`,
        `ssi_gradient`)."""
        from keras_vit.losses.dense_losses import ScaleShiftInvariantLoss
        from keras_vit.losses.dense_losses import ssi_term_metrics

        if loss is None:
            loss = ScaleShiftInvariantLoss()
        if metrics is None:
            metrics = ssi_term_metrics() if isinstance(loss, ScaleShiftInvariantLoss) else []
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def predict_depth(self, images, multiple_of=32, batch_size=4, verbose=False):
        """Depth maps of raw images of any size, at each image's own size.

        Each image is resized (bicubic) to its working size (see
        `working_size`: the model's size, aspect ratio kept, sides multiples
        of 32), normalised by the preprocessor, run, and the prediction is
        resized back (bicubic, align_corners=False), as the original
        `run_monodepth.py` does.

        Args:
            images: an `(H, W, C)` image, a `(B, H, W, C)` batch or a list of
                images of different sizes; pixels as the preprocessor takes
                them ([0, 255] for the presets).
            multiple_of: int, the working sizes' multiple.
            batch_size: int, images of one working size run together.
            verbose: bool, show a progress bar.

        Returns:
            float32 numpy: `(H, W)` for one image, `(B, H, W)` for a batch, or
            a list of `(H_i, W_i)` maps. Relative inverse depth (larger is
            nearer) for `dpt_large`/`dpt_hybrid`; metres for the metric presets.
        """
        return self._predict_dense(images, multiple_of, batch_size, verbose, lambda depth: depth[..., 0])

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
        # The segmentation loss checks its labels on the host (a callback
        # that TensorFlow cannot run under XLA): jit_compile="auto" then
        # keeps TensorFlow off XLA, as for DETR.
        from keras_vit.backend.host_callback import callback_compiles

        self.supports_jit = callback_compiles()
        self._set_neck_config(backbone, arrangement, readout, fusion_width, use_batch_norm, preprocessor)
        self.num_classes = num_classes
        self.dropout_rate = dropout_rate
        self.auxiliary_head = bool(auxiliary_head)

    def compile(
        self, optimizer="adam", loss=None, metrics=None, auxiliary_loss_weight=0.4, ignore_index=255, **kwargs
    ):
        """Keras's `compile`, with DPT's (transformers') defaults: `loss=None`
        gives cross-entropy with `ignore_index` on `"logits"` and, with the
        auxiliary head, on `"aux_logits"` at `auxiliary_loss_weight` (both
        upsampled to the labels first); Keras reports each as
        `logits_loss` / `aux_logits_loss`. `metrics=None` gives mean IoU and
        pixel accuracy on `"logits"`. Targets are `(B, H, W)` label maps; they
        go to both heads."""
        from keras_vit.losses.dense_losses import SegmentationCrossEntropy
        from keras_vit.metrics.dense import SegmentationAccuracy
        from keras_vit.metrics.dense import SegmentationMeanIoU

        if loss is None:
            loss = {"logits": SegmentationCrossEntropy(ignore_index)}
            weights = {"logits": 1.0}
            if self.auxiliary_head:
                loss["aux_logits"] = SegmentationCrossEntropy(ignore_index)
                weights["aux_logits"] = float(auxiliary_loss_weight)
            kwargs.setdefault("loss_weights", weights)
        if metrics is None:
            metrics = {
                "logits": [SegmentationMeanIoU(self.num_classes, ignore_index), SegmentationAccuracy(ignore_index)]
            }
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def _loss_targets(self, y):
        if y is None or isinstance(y, dict):
            return y
        return {"logits": y, "aux_logits": y} if self.auxiliary_head else {"logits": y}

    def predict_segmentation(self, images, multiple_of=32, batch_size=4, verbose=False):
        """Class maps of raw images of any size, at each image's own size.

        As `DPTDepthEstimator.predict_depth`: each image runs at its working
        size, and the logits are resized back (bicubic, align_corners=False)
        before the arg-max, as the original `run_segmentation.py` does.

        Returns:
            int32 numpy class indices in `[0, num_classes)`: `(H, W)` for one
            image, `(B, H, W)` for a batch, or a list. (The original ADE20K
            script adds 1 to match ADE's 1-based label files; keras_vit keeps
            the model's 0-based classes.)
        """
        return self._predict_dense(
            images, multiple_of, batch_size, verbose, lambda logits: np.argmax(logits, axis=-1).astype("int32")
        )

    def get_config(self):
        return {
            **self._neck_config(),
            "num_classes": self.num_classes,
            "dropout_rate": self.dropout_rate,
            "auxiliary_head": self.auxiliary_head,
        }
