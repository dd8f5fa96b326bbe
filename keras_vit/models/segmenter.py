"""Segmenter (Strudel, Garcia, Laptev and Schmid, ICCV 2021): semantic
segmentation with a ViT encoder and a linear or mask-transformer decoder.

    images (H, W) -> ViTBackbone (final norm) -> patch tokens (prefix tokens
    removed) -> SegmenterLinearDecoder | SegmenterMaskTransformer -> (h, w, K)
    -> bilinear upsampling (align_corners=False) to (H, W, K)

The official models use LayerNorm epsilon 1e-5 everywhere (torch's default;
timm's ViTs use 1e-6) and normalise images with mean = std = 0.5 (ViT
backbones) or ImageNet's statistics (DeiT backbones). `predict_segmentation`
runs the paper's evaluation: sliding windows over images resized so that the
short side is the window, optionally at several scales and flipped.
"""

import keras
import numpy as np

from keras_vit.backbones.vit_backbone import ViTBackbone
from keras_vit.layers.segmenter_linear_decoder import SegmenterLinearDecoder
from keras_vit.layers.segmenter_mask_transformer import SegmenterMaskTransformer
from keras_vit.models.dense_task import DenseTask
from keras_vit.models.dense_task import image_list
from keras_vit.models.dense_task import resize_numpy
from keras_vit.ops.interpolation import resize_images
from keras_vit.utils.serialization import model_config_with_backbone
from keras_vit.utils.serialization import task_from_config
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate

DECODERS = ("mask_transformer", "linear")

# The official ADE20K schedule: 64 epochs of 20,210 images at batch 8.
ADE20K_ITERATIONS = 161_680


@keras.saving.register_keras_serializable(package="keras_vit")
class Segmenter(DenseTask, keras.Model):
    """Segmenter: images -> `(B, H, W, K)` class logits at the input size.

    Args:
        backbone: a `keras_vit.ViTBackbone` (official: LayerNorm epsilon 1e-5).
        num_classes: int, K (ADE20K: 150).
        decoder: `"mask_transformer"` or `"linear"`.
        decoder_layers: int, the mask transformer's blocks (official: 2).
        decoder_heads: int or None (the official D / 64).
        decoder_dropout: float, dropout in the mask transformer (official: 0.1).
        decoder_drop_path: float, its stochastic depth (official: 0.0).
        decoder_epsilon: float, its LayerNorm epsilon (official: 1e-5).
        preprocessor: optional layer mapping raw images to the backbone's input.
        dtype: dtype policy.
    """

    def __init__(
        self,
        backbone,
        num_classes=150,
        decoder="mask_transformer",
        decoder_layers=2,
        decoder_heads=None,
        decoder_dropout=0.1,
        decoder_drop_path=0.0,
        decoder_epsilon=1e-5,
        preprocessor=None,
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("Segmenter", kwargs)
        if not isinstance(backbone, ViTBackbone) or backbone.hybrid_layers is not None:
            raise TypeError(
                "backbone must be a plain (non-hybrid) keras_vit.ViTBackbone. "
                f"Received: {type(backbone).__name__}"
            )
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}. Received: decoder={decoder!r}")
        num_classes = check_positive_int("num_classes", num_classes)
        grid = tuple(backbone.grid_size)
        inputs = keras.Input(shape=backbone.image_shape, name="images")
        tokens = backbone(inputs)[:, backbone.num_prefix_tokens:]
        if decoder == "linear":
            head = SegmenterLinearDecoder(num_classes, grid, dtype=dtype, name="decoder")
        else:
            head = SegmenterMaskTransformer(
                num_classes, grid, num_layers=decoder_layers, num_heads=decoder_heads,
                dropout_rate=check_rate("decoder_dropout", decoder_dropout),
                drop_path_rate=check_rate("decoder_drop_path", decoder_drop_path),
                layer_norm_epsilon=decoder_epsilon, dtype=dtype, name="decoder",
            )
        masks = head(tokens)
        logits = keras.layers.Lambda(
            lambda x: resize_images(x, backbone.image_shape[:2], "bilinear", align_corners=False),
            output_shape=(*backbone.image_shape[:2], num_classes), dtype=dtype, name="upsample",
        )(masks)
        super().__init__(inputs=inputs, outputs=logits, dtype=dtype, **kwargs)
        # The segmentation loss checks its labels on the host (a callback
        # that TensorFlow cannot run under XLA): jit_compile="auto" then
        # keeps TensorFlow off XLA, as for DETR.
        from keras_vit.backend.host_callback import callback_compiles

        self.supports_jit = callback_compiles()
        self.backbone = backbone
        self.num_classes = num_classes
        self.decoder = decoder
        self.decoder_layers = check_positive_int("decoder_layers", decoder_layers)
        self.decoder_heads = decoder_heads
        self.decoder_dropout = float(decoder_dropout)
        self.decoder_drop_path = float(decoder_drop_path)
        self.decoder_epsilon = float(decoder_epsilon)
        self.preprocessor = preprocessor

    def compile(
        self,
        optimizer="sgd",
        loss=None,
        metrics=None,
        decay_steps=ADE20K_ITERATIONS,
        learning_rate=None,
        weight_decay=None,
        ignore_index=255,
        **kwargs,
    ):
        """Keras's `compile`, with the official training settings as defaults.

        - `optimizer="sgd"`: SGD with momentum 0.9 and Nesterov, learning rate
          0.001 (or `learning_rate`) with polynomial decay (power 0.9, down to
          1e-5, one step per iteration over `decay_steps`), no weight decay
          (the official ADE20K settings); `"adamw"`: AdamW with the same
          schedule from 1e-4 and weight decay 0.01; or any Keras optimizer.
        - `loss=None`: cross-entropy with `ignore_index`
          (`keras_vit.losses.SegmentationCrossEntropy`).
        - `metrics=None`: mean IoU and pixel accuracy.
        """
        from keras_vit.losses.dense_losses import SegmentationCrossEntropy
        from keras_vit.metrics.dense import SegmentationAccuracy
        from keras_vit.metrics.dense import SegmentationMeanIoU

        if isinstance(optimizer, str) and optimizer in ("sgd", "adamw"):
            optimizer = segmenter_optimizer(optimizer, decay_steps, learning_rate, weight_decay)
        if loss is None:
            loss = SegmentationCrossEntropy(ignore_index)
        if metrics is None:
            metrics = [SegmentationMeanIoU(self.num_classes, ignore_index), SegmentationAccuracy(ignore_index)]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def predict_segmentation(
        self, images, window_size=None, window_stride=None, scales=(1.0,), flip=False, batch_size=4,
        return_probabilities=False, mode="slide", verbose=False,
    ):
        """Class maps of raw images of any size, as the paper evaluates.

        For each scale `s` (the paper's multi-scale: 0.5, 0.75, ..., 1.75),
        each image is resized (bilinear, aspect ratio kept) so that its short
        side is `s * window_size` (its long side at most four times that, as
        mmsegmentation's ADE20K `(2048, 512)` scale), then, if its short side
        is below the window, resized again up to it (the official
        `inference`; see `scaled_sizes`); windows of `window_size` slide with `window_stride`, the
        last anchored at the far edge; overlapping logits are averaged,
        resized (bilinear) to the image's size, flipped back for the flipped
        pass, turned into probabilities (softmax) and averaged over scales
        and flips.

        Args:
            images: an `(H, W, C)` image, a `(B, H, W, C)` batch or a list of
                images of different sizes, pixels as the preprocessor takes
                them ([0, 255] for the presets).
            window_size: int, the window side; default the model's input size
                (square models only).
            window_stride: int; default `window_size` (the official ADE20K
                setting).
            scales: floats, the resize ratios.
            flip: bool, also run the horizontally flipped images.
            batch_size: int, windows per model call.
            return_probabilities: bool, return `(H, W, K)` float32 class
                probabilities instead of class indices.
            mode: `"slide"` (the above) or `"whole"`: each image, resized by
                each scale, runs whole, padded at the bottom and right to a
                multiple of the patch (with the value the preprocessor maps to
                0, as the official model pads its normalised input with
                zeros), and the padding is cut off the upsampled logits.
            verbose: bool, show a progress bar.

        Returns:
            int32 class indices in `[0, num_classes)` (or probabilities):
            `(H, W)` for one image, `(B, H, W)` for a batch, or a list.
        """
        if mode not in ("slide", "whole"):
            raise ValueError(f"mode must be 'slide' or 'whole'. Received: mode={mode!r}")
        height, width = self.backbone.image_shape[:2]
        if window_size is None and mode == "slide":
            if height != width:
                raise ValueError(
                    f"This model's input is {height}x{width}: pass window_size (a square window fits "
                    "at_image_size((window_size, window_size)))."
                )
            window_size = height
        window = check_positive_int("window_size", window_size if window_size is not None else height)
        stride = window if window_stride is None else check_positive_int("window_stride", window_stride)
        batch_size = check_positive_int("batch_size", batch_size)
        scales = tuple(float(s) for s in scales)
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be positive numbers. Received: scales={scales!r}")
        model = self.at_image_size((window, window)) if mode == "slide" else None
        arrays, kind = image_list(images, self.backbone.image_shape[-1])
        progress = keras.utils.Progbar(len(arrays), verbose=1) if verbose else None
        outputs = []
        for array in arrays:
            total = 0.0
            for ratio in scales:
                if mode == "slide":
                    scaled = array
                    for size in scaled_sizes(array.shape[:2], window, ratio):
                        scaled = resize_numpy(scaled, size, "bilinear")
                else:
                    size = tuple(max(int(side * ratio + 0.5), 1) for side in array.shape[:2])
                    scaled = resize_numpy(array, size, "bilinear")
                for flipped in (False, True) if flip else (False,):
                    image = scaled[:, ::-1] if flipped else scaled
                    if mode == "slide":
                        logits = sliding_window_logits(model, image, window, stride, batch_size)
                    else:
                        logits = self._whole_image_logits(image)
                    logits = resize_numpy(logits, array.shape[:2], "bilinear")
                    total = total + _softmax(logits[:, ::-1] if flipped else logits)
            probabilities = (total / (len(scales) * (2 if flip else 1))).astype("float32")
            outputs.append(probabilities if return_probabilities else np.argmax(probabilities, -1).astype("int32"))
            if progress is not None:
                progress.add(1)
        return outputs if kind == "list" else outputs[0] if kind == "image" else np.stack(outputs)

    def _whole_image_logits(self, image):
        """`(H, W, K)` logits of one raw image, padded to a multiple of the
        patch for the run and cropped back (the official `padding` /
        `unpadding`)."""
        patch_h, patch_w = self.backbone.patch_size
        height, width = image.shape[:2]
        padded_size = (-(-height // patch_h) * patch_h, -(-width // patch_w) * patch_w)
        fill = _preprocessor_zero(self.preprocessor, image.shape[-1])
        padded = np.broadcast_to(fill, (*padded_size, image.shape[-1])).astype("float32").copy()
        padded[:height, :width] = image
        logits = self.at_image_size(padded_size).predict_on_batch(padded[None])
        return np.asarray(keras.ops.convert_to_numpy(logits), "float32")[0, :height, :width]

    def get_config(self):
        return {
            **model_config_with_backbone(self),
            "num_classes": self.num_classes,
            "decoder": self.decoder,
            "decoder_layers": self.decoder_layers,
            "decoder_heads": self.decoder_heads,
            "decoder_dropout": self.decoder_dropout,
            "decoder_drop_path": self.decoder_drop_path,
            "decoder_epsilon": self.decoder_epsilon,
            "preprocessor": (
                None if self.preprocessor is None else keras.saving.serialize_keras_object(self.preprocessor)
            ),
        }

    @classmethod
    def from_config(cls, config):
        return task_from_config(cls, config)


def segmenter_optimizer(name="sgd", decay_steps=ADE20K_ITERATIONS, learning_rate=None, weight_decay=None):
    """The official optimiser (`"sgd"`) or the AdamW option (`"adamw"`), with
    polynomial decay (power 0.9, to 1e-5) stepped every iteration."""
    if name not in ("sgd", "adamw"):
        raise ValueError(f"name must be 'sgd' or 'adamw'. Received: name={name!r}")
    decay_steps = check_positive_int("decay_steps", decay_steps)
    start = (1e-3 if name == "sgd" else 1e-4) if learning_rate is None else float(learning_rate)
    schedule = keras.optimizers.schedules.PolynomialDecay(start, decay_steps, end_learning_rate=1e-5, power=0.9)
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay or None)
    return keras.optimizers.AdamW(schedule, weight_decay=0.01 if weight_decay is None else weight_decay)


def scaled_size(size, window, ratio=1.0):
    """`(h, w)` an image of `size` is evaluated at, for scale `ratio`; see
    `scaled_sizes`."""
    return scaled_sizes(size, window, ratio)[-1]


def scaled_sizes(size, window, ratio=1.0):
    """The one or two resizes of an image of `size` for scale `ratio`: first
    to fit a short side of `ratio * window` and a long side of
    `4 * ratio * window`, aspect ratio kept (mmsegmentation's keep-ratio
    rule, sizes rounded half up); then, when its short side is below
    `window`, up so that it equals it (the official `resize`, sizes
    truncated). Both are done, one after the other, as the official
    evaluation does."""
    height, width = size
    short, long_ = ratio * window, 4 * ratio * window
    factor = min(long_ / max(height, width), short / min(height, width))
    sizes = [(int(height * factor + 0.5), int(width * factor + 0.5))]
    height, width = sizes[0]
    if min(height, width) < window:
        if height < width:
            sizes.append((window, int(width / height * window)))
        else:
            sizes.append((int(height / width * window), window))
    return sizes


def window_anchors(length, window, stride):
    """Window starts along one side: every `stride` below `length - window`,
    then `length - window` (the last window at the far edge)."""
    return [a for a in range(0, length, stride) if a < length - window] + [length - window]


def sliding_window_logits(model, image, window, stride, batch_size):
    """`(H, W, K)` logits of one `(H, W, C)` image (both sides >= `window`):
    windows at `window_anchors`, run `batch_size` at a time, their logits
    summed into place and divided by how many windows cover each pixel."""
    height, width = image.shape[:2]
    if min(height, width) < window:
        raise ValueError(f"The image ({height}x{width}) is smaller than the window ({window}); resize it first.")
    anchors = [(top, left) for top in window_anchors(height, window, stride) for left in window_anchors(width, window, stride)]
    total = None
    count = np.zeros((height, width, 1), "float32")
    for start in range(0, len(anchors), batch_size):
        chunk = anchors[start:start + batch_size]
        crops = np.stack([image[top:top + window, left:left + window] for top, left in chunk])
        logits = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(crops)), "float32")
        if total is None:
            total = np.zeros((height, width, logits.shape[-1]), "float32")
        for (top, left), value in zip(chunk, logits):
            total[top:top + window, left:left + window] += value
            count[top:top + window, left:left + window] += 1
    return total / count


def _preprocessor_zero(preprocessor, channels):
    """The raw pixel value per channel that `preprocessor` maps to 0 (its
    mean / scale for `ViTImagePreprocessor`; 0 without a preprocessor)."""
    if preprocessor is None:
        return np.zeros(channels, "float32")
    mean = np.asarray(getattr(preprocessor, "mean", (0.0,)), "float32")
    scale = float(getattr(preprocessor, "scale", 1.0))
    return np.broadcast_to(mean / scale, (channels,))


def _softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(-1, keepdims=True)
