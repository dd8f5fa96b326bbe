"""Predictions on image files for every task: what `keras-vit predict` runs.

`predict_files(model, ["photo.jpg", "folder/"], "predictions/")` reads the
images (a folder is searched for image files, recursively), runs the task's
own inference on each at its own size, and writes `predictions.json` and one
picture per image:

| model | in `predictions.json`, per image | files, per image |
|---|---|---|
| `ViT` | the top-k classes and their softmax scores | `NNNN_name.png`: the image titled with its best class |
| `DETR` | boxes (pixel `xyxy` on the original image), labels, scores above the threshold | `NNNN_name.png`: the boxes drawn |
| `DPTDepthEstimator` | the depth map's file, min, max and mean | `NNNN_name_depth.npy` (float32, the image's size) and `NNNN_name.png`, colourised |
| `DPTImageSegmenter`, `Segmenter` | the class-map file and each class's share of the pixels | `NNNN_name_mask.png` (class index per pixel) and `NNNN_name.png`, the classes over the image |

Every file is written atomically (a unique temporary name, then a rename).
"""

import io
import os

import keras
import numpy as np
from keras import ops

from keras_vit.utils.files import write_bytes_atomically
from keras_vit.utils.files import write_json_atomically
from keras_vit.visualization.figures import save_figure

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def find_images(inputs):
    """The image files named by `inputs` (files, or folders searched recursively), in order."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = []
    for item in inputs:
        item = os.path.expanduser(os.fspath(item))
        if os.path.isdir(item):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(item)
                for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise ValueError(f"folder {item!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)}).")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise ValueError(f"{item!r} is neither an image file nor a folder.")
    if not paths:
        raise ValueError("No images given: pass image files or folders.")
    return paths


def load_image(path, channels=3):
    """`(H, W, channels)` float32 pixels in [0, 255]; ValueError naming the file if it is not an image."""
    try:
        image = keras.utils.load_img(path, color_mode="grayscale" if channels == 1 else "rgb")
    except Exception as error:  # PIL's UnidentifiedImageError, OSError on a truncated file
        raise ValueError(f"{path!r} is not a readable image ({type(error).__name__}: {error}).") from error
    return keras.utils.img_to_array(image, dtype="float32")


def task_kind(model):
    """`"classification"`, `"detection"`, `"depth"` or `"segmentation"`: what a keras_vit task predicts."""
    from keras_vit.models.detr import DETR
    from keras_vit.models.dpt import DPTDepthEstimator
    from keras_vit.models.dpt import DPTImageSegmenter
    from keras_vit.models.segmenter import Segmenter
    from keras_vit.models.swin import PooledClassifier
    from keras_vit.models.vit import ViT

    for cls, kind in ((ViT, "classification"), (PooledClassifier, "classification"), (DETR, "detection"), (DPTDepthEstimator, "depth"),
                      (DPTImageSegmenter, "segmentation"), (Segmenter, "segmentation")):
        if isinstance(model, cls):
            return kind
    raise TypeError(
        f"Expected a keras_vit task (ViT, Swin, MViT, DETR, DPTDepthEstimator, DPTImageSegmenter, Segmenter). "
        f"Received: {type(model).__name__}"
    )


def predict_files(model, inputs, output_dir, class_names=None, top_k=5, score_threshold=0.5, image_size=None,
                  max_size=None, verbose=True):
    """Runs `model` on image files and writes `predictions.json` and pictures to `output_dir`.

    Args:
        model: a keras_vit task with weights (and, for ViT and the dense
            tasks, its preprocessor).
        inputs: image files and/or folders.
        output_dir: where the files go (created).
        class_names: optional names by class index.
        top_k: classes kept per image (ViT).
        score_threshold: detections kept above it (DETR).
        image_size: DETR's working size, the shorter side (default 800).
        max_size: DETR's cap on the longer side (default `image_size *
            1333 / 800`, the COCO setting).
        verbose: a progress bar.

    Returns:
        The `predictions.json` content: `{"model", "task", "images": [...]}`.
    """
    kind = task_kind(model)
    if class_names is not None:
        class_names = [str(name) for name in class_names]
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive int. Received: top_k={top_k!r}")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1]. Received: score_threshold={score_threshold!r}")
    paths = find_images(inputs)
    os.makedirs(output_dir, exist_ok=True)
    channels = model.backbone.input_shape[-1] or 3
    progress = keras.utils.Progbar(len(paths), unit_name="image") if verbose else None
    records = []
    for index, path in enumerate(paths):
        image = load_image(path, channels)
        stem = f"{index:04d}_{os.path.splitext(os.path.basename(path))[0]}"
        record = {"file": path, "height": int(image.shape[0]), "width": int(image.shape[1]), "picture": f"{stem}.png"}
        if kind == "classification":
            record.update(_classify(model, image, class_names, top_k, os.path.join(output_dir, stem)))
        elif kind == "detection":
            record.update(_detect(model, image, class_names, score_threshold, image_size, max_size,
                                  os.path.join(output_dir, stem)))
        elif kind == "depth":
            record.update(_depth(model, image, os.path.join(output_dir, stem)))
        else:
            record.update(_segment(model, image, class_names, os.path.join(output_dir, stem)))
        records.append(record)
        if progress is not None:
            progress.update(index + 1)
    results = {"model": type(model).__name__, "task": kind, "images": records}
    write_json_atomically(os.path.join(output_dir, "predictions.json"), results)
    return results


def _name(class_names, label):
    return class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)


def _classify(model, image, class_names, top_k, stem):
    preprocessor = model.preprocessor
    if preprocessor is None:
        raise ValueError("This ViT has no preprocessor: give it one (keras_vit.ViTImagePreprocessor) to predict on files.")
    # Resized here as the preprocessor would: one compiled step serves every image size.
    batch = ops.image.resize(
        image[None], preprocessor.image_size, interpolation=preprocessor.interpolation, antialias=preprocessor.antialias
    )
    outputs = ops.convert_to_numpy(model.predict(ops.convert_to_numpy(batch), verbose=0))[0].astype("float64")
    if getattr(model, "activation", None) in (None, "linear"):  # logits
        outputs = np.exp(outputs - outputs.max())
        outputs = outputs / outputs.sum()
    order = np.argsort(-outputs, kind="stable")[:top_k]
    top = [{"label": int(c), "name": _name(class_names, int(c)), "score": float(outputs[c])} for c in order]
    figure = _figure(image)
    figure.axes[0].set_title(f"{top[0]['name']} ({top[0]['score']:.2f})")
    save_figure(figure, f"{stem}.png", dpi=100, bbox_inches="tight")
    return {"top_k": top}


def _detect(model, image, class_names, score_threshold, image_size, max_size, stem):
    from keras_vit.visualization.detections import plot_detections

    height, width = image.shape[:2]
    fixed = tuple(model.backbone.input_shape[1:3])
    if None not in fixed:
        # A backbone built for one size (ViTDet): the image fitted into it, padded, with its mask.
        if image_size is not None or max_size is not None:
            raise ValueError(
                f"This DETR's backbone is built for {fixed[0]} x {fixed[1]} images: every image is fitted into that "
                f"size; image_size and max_size do not apply. Received: image_size={image_size!r}, max_size={max_size!r}"
            )
        factor = min(fixed[0] / height, fixed[1] / width)
        size = (min(fixed[0], max(1, round(height * factor))), min(fixed[1], max(1, round(width * factor))))
        resized = ops.convert_to_numpy(ops.image.resize(image[None], size, interpolation="bilinear"))
        padded = np.zeros((1, *fixed, 3), "float32")
        padded[:, :size[0], :size[1]] = resized
        mask = np.zeros((1, *fixed), bool)
        mask[:, :size[0], :size[1]] = True
        outputs = model.predict({"images": padded, "pixel_mask": mask}, verbose=0)
    else:
        shorter = 800 if image_size is None else image_size
        longer = round(shorter * 1333 / 800) if max_size is None else max_size
        factor = min(shorter / min(height, width), longer / max(height, width))
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        resized = ops.convert_to_numpy(ops.image.resize(image[None], size, interpolation="bilinear"))
        outputs = model.predict({"images": resized}, verbose=0)
    detections = model.post_process(outputs, np.array([[height, width]], "float32"), score_threshold, "xyxy")
    detections = {k: ops.convert_to_numpy(v) for k, v in detections.items()}
    keep = detections["labels"][0] >= 0
    found = [
        {"label": int(label), "name": _name(class_names, int(label)), "score": float(score),
         "box_xyxy": [float(v) for v in box]}
        for box, label, score in zip(detections["boxes"][0][keep], detections["labels"][0][keep],
                                     detections["scores"][0][keep])
    ]
    figure = plot_detections(image[None], detections, class_names=class_names, score_threshold=score_threshold,
                             columns=1)
    save_figure(figure, f"{stem}.png", dpi=100, bbox_inches="tight")
    return {"detections": found, "working_size": list(size)}


def _depth(model, image, stem):
    from keras_vit.visualization.dense import colorize_depth

    depth = np.asarray(model.predict_depth(image), "float32")
    buffer = io.BytesIO()
    np.save(buffer, depth, allow_pickle=False)
    write_bytes_atomically(f"{stem}_depth.npy", buffer.getvalue())
    _save_png(colorize_depth(depth), f"{stem}.png")
    return {"depth": os.path.basename(f"{stem}_depth.npy"), "min": float(depth.min()), "max": float(depth.max()),
            "mean": float(depth.mean())}


def _segment(model, image, class_names, stem):
    from keras_vit.visualization.dense import overlay_mask

    from keras_vit.models.segmenter import Segmenter

    height, width = model.backbone.image_shape[:2]
    if isinstance(model, Segmenter) and height != width:  # sliding windows are square: the whole image instead
        labels = np.asarray(model.predict_segmentation(image, mode="whole"))
    else:
        labels = np.asarray(model.predict_segmentation(image))
    num_classes = model.num_classes
    mask = labels.astype("uint8" if num_classes <= 256 else "uint16")
    _save_png(mask, f"{stem}_mask.png")
    picture = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    _save_png(overlay_mask(picture, labels, num_classes), f"{stem}.png")
    counts = np.bincount(labels.ravel(), minlength=num_classes)
    shares = {_name(class_names, c): round(float(counts[c] / labels.size), 6) for c in np.flatnonzero(counts)}
    return {"mask": os.path.basename(f"{stem}_mask.png"), "class_shares": shares}


def _figure(image):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4, 4 * image.shape[0] / image.shape[1]))
    if image.shape[-1] == 1:
        axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        axis.imshow(np.clip(image / 255.0, 0, 1))
    axis.axis("off")
    return figure


def _save_png(array, path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(buffer, format="PNG")
    write_bytes_atomically(path, buffer.getvalue())
