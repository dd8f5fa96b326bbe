"""`keras-vit evaluate`: a preset on a recipe's test set, with that recipe's metrics.

A preset a recipe wrote (its `metadata.json` holds the run's config) is
evaluated on the same test split as at the end of training, unless
`--dataset` names another; any other preset needs `--dataset`, and is
evaluated at its own input size. The metrics are the recipe's own:
accuracy and loss (ViT), COCO AP (DETR, pycocotools-equal), the depth
metrics (DPT depth), mean IoU and pixel accuracy (segmentation).
"""

import importlib
import os

import keras
import numpy as np

from keras_vit.presets.preset_directory import read_metadata

RECIPES = {
    "classification": "recipes.vit_classification",
    "detection": "recipes.detr_detection",
    "depth": "recipes.dpt_depth",
    "segmentation": "recipes.segmentation",
}


def evaluation_config(model, kind, source, dataset=None, batch_size=None, data_dir=None, offline=False):
    """The recipe config the evaluation runs with (see the module docstring)."""
    module = importlib.import_module(RECIPES[kind])
    metadata = read_metadata(source)
    config = dict(module.CONFIG)
    if metadata.get("recipe") == RECIPES[kind].split(".")[1] and isinstance(metadata.get("config"), dict):
        config.update(metadata["config"])
    elif dataset is None:
        raise ValueError(
            f"{source!r} was not written by the {RECIPES[kind].split('.')[1]} recipe, so its test set is unknown: "
            f"pass --dataset (for example tfds:NAME or folder:PATH)."
        )
    else:
        size = getattr(getattr(model, "preprocessor", None), "image_size", None)
        if size is not None:
            if size[0] != size[1]:
                raise ValueError(f"The recipes evaluate square inputs; this preset takes {size[0]}x{size[1]}.")
            config["image_size"] = int(size[0])
    if dataset is not None:
        config["dataset"] = dataset
    if batch_size is not None:
        config["batch_size"] = batch_size
    config["data_dir"], config["offline"] = data_dir, offline
    return config


def evaluate_preset(model, kind, config, verbose=True):
    """`(metrics, images)`: the recipe's metrics of `model` on the test split
    of `config["dataset"]`; `verbose`: a progress bar."""
    module = importlib.import_module(RECIPES[kind])
    batch = config["batch_size"]
    if kind == "classification":
        _, test, num_classes, _ = module.load_data(config)
        _check_classes(model.num_classes, num_classes, config)
        model.compile()  # the task's loss and accuracy
        if isinstance(test, tuple):
            metrics = model.evaluate(*test, batch_size=256, verbose=int(verbose), return_dict=True)  # as the recipe
        else:
            metrics = model.evaluate(test, verbose=int(verbose), return_dict=True)
        metrics = {"accuracy": float(metrics["accuracy"]), "loss": float(metrics["loss"])}
    elif kind == "detection":
        _, test, class_names = module.load_data(config)
        _check_classes(model.num_classes, len(class_names), config)
        metrics, _ = module.evaluate(model, test, batch * 4, verbose=verbose)  # the recipe's evaluation batch
        metrics = {k: float(v) for k, v in metrics.items()}
    elif kind == "depth":
        _, test = module.load_data(config)
        metrics = module.evaluate(model, test, config, verbose=verbose)
    else:
        _, test, class_names = module.load_data(config)
        _check_classes(model.num_classes, len(class_names), config)
        metrics = module.evaluate(model, test, model.num_classes, batch * 4, verbose=verbose)
    return metrics, _count(test)


def _check_classes(model_classes, data_classes, config):
    if model_classes != data_classes:
        raise ValueError(
            f"The preset predicts {model_classes} classes and {config['dataset']} has {data_classes}: evaluate it on "
            "a dataset with its classes (or fine-tune it first: keras-vit finetune PRESET for a classifier, keras-vit "
            "detect/depth/segment --preset PRESET for the others)."
        )


def _count(test):
    if isinstance(test, tuple):
        first = test[0]["images"] if isinstance(test[0], dict) else test[0]
        return int(len(first))
    return None  # a tf.data set: counted only by iterating it again


def main(source, dataset=None, batch_size=None, data_dir=None, offline=False, output=None):
    """Loads, evaluates, prints the metrics and writes them to `output` (JSON) if given; returns the results."""
    from keras_vit.models.task import Task
    from keras_vit.prediction import task_kind
    from keras_vit.utils.files import write_json_atomically

    model = Task.from_preset(source)
    kind = task_kind(model)
    config = evaluation_config(model, kind, source, dataset, batch_size, data_dir, offline)
    print(f"evaluating {type(model).__name__} on {config['dataset']} ({kind}) ...", flush=True)
    metrics, images = evaluate_preset(model, kind, config)
    results = {
        "preset": os.fspath(source), "dataset": config["dataset"], "backend": keras.backend.backend(),
        "task": kind, "metrics": {k: float(np.asarray(v)) for k, v in metrics.items()},
    }
    if images is not None:
        results["images"] = images
    for name, value in results["metrics"].items():
        print(f"  {name}: {value:.4f}")
    if output is not None:
        write_json_atomically(output, results)
        print(f"wrote {output}")
    return results
