"""Export of task models for serving: TensorFlow SavedModel and ONNX.

`model.export(path, format="onnx")` on any keras_vit task (ViT, DETR, DPT,
Segmenter) writes an artifact that takes **raw images** as the task's
`predict` does: float32 pixels in [0, 255], `(batch, H, W, C)` at the
model's input size (its preprocessor's `image_size`; DETR: the `image_size`
given to `export`), with a dynamic batch. The preprocessor (resize check,
scaling, mean and std) is inside the artifact. The outputs are the model's
own (`ViT`: logits; DPT depth: depth; the segmenters: `logits` at the input
size), without the auxiliary heads that only training uses.

DETR takes two inputs, `images` and `pixel_mask` (`(batch, H, W)`, 1 on real
pixels, 0 on padding), and gives `logits` `(batch, queries, classes + 1)`
and `boxes` (normalised `cxcywh`). The post-processing of
`predict_detections` (softmax, the no-object class, scaling boxes to pixels,
the threshold) stays outside: it is a few numpy lines on the outputs, and the
serving side usually owns thresholds.

What each backend can write (Keras' own exporters, and `torch.export` for
torch's ONNX):

| backend | `tf_saved_model` | `onnx` |
|---|---|---|
| TensorFlow | yes | yes (tf2onnx) |
| JAX | yes (jax2tf) | yes (jax2onnx) |
| torch | no: Keras' torch SavedModel path fails in `torch.export` | yes (`torch.export`, dynamic batch) |
"""

import os
import shutil

import keras
from keras import ops

from keras_vit.utils import files

FORMATS = ("tf_saved_model", "onnx")


def serving_model(model, image_size=None):
    """A functional model from raw images (and DETR's pixel mask) to the
    task's inference outputs, for export."""
    from keras_vit.backbones.backbone import Backbone
    from keras_vit.models.detr import DETR
    from keras_vit.utils.validation import check_pair

    if isinstance(model, Backbone):
        # A backbone alone: its own inputs (preprocessed images) and outputs.
        height, width, channels = model.input_shape[1:]
        if image_size is not None:
            height, width = check_pair("image_size", image_size)
        if height is None or width is None:
            raise ValueError(
                f"{type(model).__name__} takes images of any size; export needs one. Pass image_size=(height, width). "
                "Received: image_size=None"
            )
        images = keras.Input((height, width, channels), name="images")
        return keras.Model(images, model(images))
    if isinstance(model, DETR):
        if image_size is None:
            raise ValueError(
                "DETR takes images of any size; export needs one. Pass image_size=(height, width), e.g. "
                "image_size=(800, 1088) for COCO-sized inputs padded to a multiple of 32. Received: image_size=None"
            )
        height, width = check_pair("image_size", image_size)
        images = keras.Input((height, width, 3), name="images")
        pixel_mask = keras.Input((height, width), name="pixel_mask")
        outputs = model({"images": images, "pixel_mask": ops.greater(pixel_mask, 0.5)})
        return keras.Model([images, pixel_mask], {"logits": outputs["logits"], "boxes": outputs["boxes"]})
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise ValueError(
            f"{type(model).__name__} has no preprocessor, so its input size and pixel scaling are unknown. "
            "Give the task a preprocessor (e.g. keras_vit.ViTImagePreprocessor(image_size)) before exporting."
        )
    size = check_pair("image_size", image_size) if image_size is not None else tuple(preprocessor.image_size)
    channels = model.backbone.input_shape[-1] if getattr(model, "backbone", None) is not None else 3
    images = keras.Input((size[0], size[1], channels), name="images")
    outputs = model(preprocessor(images))
    if isinstance(outputs, dict):
        outputs = {k: v for k, v in outputs.items() if not k.startswith("aux")}
    return keras.Model(images, outputs)


def check_destination(filepath, format):
    """A ValueError, before any work, when `filepath` cannot take a `format`
    artifact: an ONNX file over a directory, a SavedModel over a file, or a
    folder this process may not write into."""
    path = os.path.abspath(os.fspath(filepath))
    if format == "onnx" and os.path.isdir(path):
        raise ValueError(
            f"{filepath} is a directory and an ONNX export is one file: give a file path, e.g. "
            f"{os.path.join(os.fspath(filepath), 'model.onnx')}."
        )
    if format == "tf_saved_model" and os.path.isfile(path):
        raise ValueError(f"{filepath} is a file and a SavedModel is a directory: give a folder path.")
    existing = os.path.dirname(path)
    while existing and not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    if existing and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing} is not writable: choose another destination than {filepath}.")


def export_task(model, filepath, format="tf_saved_model", image_size=None, batch_size=None, verify=True, verbose=None):
    """Writes `model` (a keras_vit task) as `format` to `filepath`; returns `filepath`.

    Args:
        model: a keras_vit task model with weights.
        filepath: the artifact to write (a directory for `tf_saved_model`,
            a file for `onnx`).
        format: `"tf_saved_model"` or `"onnx"`.
        image_size: `(H, W)` to export at; required for DETR, otherwise the
            preprocessor's size.
        batch_size: None for a dynamic batch, or a fixed batch size.
        verify: run the artifact (onnxruntime; TensorFlow for a SavedModel)
            on random images before it is moved into place, and refuse it
            (`RuntimeError`, nothing written) unless its outputs equal the
            Keras model's within 1e-4 (relative to the outputs' scale).
        verbose: Keras' export message.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}")
    check_destination(filepath, format)
    backend = keras.backend.backend()
    if format == "tf_saved_model" and backend == "torch":
        raise NotImplementedError(
            "A SavedModel cannot be written from the torch backend: Keras' path through torch.export fails on "
            "keras_vit models ('Detected mismatch between the structure of `inputs` and `dynamic_shapes`'). "
            "Load the preset under KERAS_BACKEND=tensorflow or jax and export there (the weights are the same), "
            "or export to format='onnx' from torch."
        )
    for variable in model.weights:
        if keras.backend.standardize_dtype(variable.dtype) != "float32":
            raise ValueError(
                f"export needs a float32 model (Keras' exporters); {variable.path} is {variable.dtype}. "
                "Rebuild the model with dtype='float32' and load its weights."
            )
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic) or a positive int. Received: batch_size={batch_size!r}")
    serving = serving_model(model, image_size)
    samples = [ops.zeros((1, *spec.shape[1:]), "float32") for spec in serving.inputs]
    serving(samples if len(samples) > 1 else samples[0])  # built and called once: Keras' exporters need it
    specs = [
        keras.InputSpec(shape=(batch_size, *spec.shape[1:]), dtype="float32", name=spec.name) for spec in serving.inputs
    ]
    # Written under a staging name, then renamed into place (keras_vit.utils.files).
    if format == "onnx":
        staging = files.atomic_file(filepath)
    else:
        staging = files.staging_directory(filepath)
    try:
        try:
            if format == "onnx" and backend == "torch":
                from keras_vit.backend.torch_export import export_onnx

                export_onnx(serving, staging, [spec.shape for spec in specs], [spec.name for spec in specs], batch_size)
            else:
                signature = [specs] if len(specs) > 1 else specs
                serving.export(staging, format=format, verbose=verbose, input_signature=signature)
        except ImportError as error:
            raise ImportError(
                f"{error} Exporting to {format} from the {backend} backend needs the export extra: "
                "pip install 'keras-vit[export]' (onnx, onnxruntime, tf2onnx, jax2onnx, onnxscript)."
            ) from error
        except Exception as error:
            raise RuntimeError(
                f"The {backend} backend's {format} exporter fails on {type(model).__name__} "
                f"({type(error).__name__}: {_first_line(error)}); nothing was written. docs/guides/export.md lists "
                "what each backend can export."
            ) from error
        if verify:
            _verify(serving, staging, format, specs, batch_size)
        with files.file_lock(filepath):
            if format == "onnx":
                files.commit_file(staging, filepath)
            else:
                files.replace_directory(staging, filepath)
    except BaseException:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
        elif os.path.exists(staging):
            os.remove(staging)
        raise
    return filepath


def _verify(serving, path, format, specs, batch_size):
    """Runs the artifact at `path` and compares it with `serving` (Keras)."""
    import numpy as np
    from keras import tree

    rng = np.random.default_rng(0)
    batch = batch_size or 2  # two images: a dynamic batch that only works for one is caught
    inputs = []
    for spec in specs:
        shape = (batch, *spec.shape[1:])
        if spec.name == "pixel_mask":
            mask = np.ones(shape, "float32")
            mask[-1, :, shape[2] // 2:] = 0  # one padded image
            inputs.append(mask)
        else:
            inputs.append(rng.uniform(0, 255, shape).astype("float32"))
    expected = [np.asarray(ops.convert_to_numpy(v)) for v in tree.flatten(serving(inputs if len(inputs) > 1 else inputs[0]))]
    try:
        if format == "onnx":
            try:
                import onnxruntime
            except ImportError:
                raise ImportError(
                    "export(verify=True) runs the ONNX file with onnxruntime, which is not installed: "
                    "pip install onnxruntime (or pip install -e '.[export]'), or pass verify=False."
                ) from None
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            got = session.run(None, {spec.name: x for spec, x in zip(specs, inputs)})
        else:
            from keras_vit.backend.tf_saved_model import run_saved_model

            got = run_saved_model(path, inputs if len(inputs) > 1 else inputs[0])
    except ImportError:
        raise
    except Exception as error:
        raise RuntimeError(
            f"The exported {format} artifact does not run ({type(error).__name__}: {_first_line(error)}); nothing "
            f"was written. docs/guides/export.md lists what each backend can export"
            f"{'' if batch_size else '; a fixed batch_size may help'}."
        ) from error
    if len(got) != len(expected):
        raise RuntimeError(f"The exported {format} artifact has {len(got)} outputs, the model {len(expected)}; "
                           "nothing was written.")
    for i, (a, b) in enumerate(zip(got, expected)):
        a = np.asarray(a)
        scale = max(1.0, float(np.max(np.abs(b))))
        if a.shape != b.shape or not np.max(np.abs(a - b)) <= 1e-4 * scale:
            difference = "shape " + str(a.shape) if a.shape != b.shape else f"max difference {np.max(np.abs(a - b)):.3g}"
            raise RuntimeError(
                f"The exported {format} artifact's output {i} differs from the Keras model's ({difference}, "
                f"model shape {b.shape}); nothing was written."
            )


def _first_line(error):
    """The first informative line of an exporter's error (the whole one is
    chained as `__cause__`): Keras' "Exception encountered when calling ..."
    wrapper line is passed over for the message it wraps."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras' bold markers
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        return f"{lines[0]} {lines[1]}"
    return lines[0] if lines else "no message"
