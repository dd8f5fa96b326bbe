"""Does the input pipeline keep up with training? Per task, on local folders.

    python benchmarks/input_pipeline.py                      # every backend, recipe sizes
    python benchmarks/input_pipeline.py --backends torch --image-size 224

For each recipe (classification, detection, segmentation, depth) a folder in
the task's layout is written from the embedded data (`--images` training
images; PNGs, so each image is decoded from disk every epoch), read through
the recipe's own `--dataset folder:PATH` pipeline (parallel decoding, the
task's augmentation, batching, prefetching), and timed three ways, each in
images per second:

- pipeline: the training set alone, iterated to the end twice (after one
  batch of warm-up): what the input side can supply;
- step: the recipe's model's `train_on_batch` on batches held in memory
  (median of 8 after 2 of warm-up): what the training step consumes;
- fit: `model.fit` on the folder pipeline (repeated, so that nothing
  restarts at the epoch boundary), its second epoch: the two together.

`pipeline / step` above 1 means the input side is not the bottleneck; `fit /
step` near 1 means it is hidden behind the step in practice. On this 2-core
machine the pipeline's threads and the step share the same cores, so the
figures are conservative for a machine whose accelerator runs the step.
Each backend runs in its own process; the results go to
benchmarks/results_input_pipeline.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TASKS = ("classification", "detection", "segmentation", "depth")


def _write_folder(task, path, size, count):
    import numpy as np

    from keras_vit.data import SHAPE_CLASSES
    from keras_vit.data import make_scenes
    from keras_vit.data import make_shapes
    from recipes import folder_data

    test_count = 16
    if task == "classification":
        rng = np.random.default_rng(0)
        # Photographs-like RGB noise at the size (the digits are 8x8 originals).
        images = rng.integers(0, 256, size=(count + test_count, size, size, 3), dtype="uint8")
        labels = np.arange(count + test_count) % 10
        splits = {"train": (images[:count], labels[:count]), "test": (images[count:], labels[count:])}
        folder_data.write_classification(path, splits, [f"class_{i}" for i in range(10)])
    elif task == "detection":
        splits = {"train2017": make_shapes(count, size, 3, seed=0), "val2017": make_shapes(test_count, size, 3, seed=1)}
        folder_data.write_coco(path, splits, list(SHAPE_CLASSES))
    else:
        train, test = make_scenes(count, size, 3, seed=0), make_scenes(test_count, size, 3, seed=1)
        target, folder = (2, "masks") if task == "segmentation" else (1, "depth")
        folder_data.write_pairs(path, {"train": (train[0], train[target]), "test": (test[0], test[target])}, folder)


def _model(task, config, num_classes, channels):
    import keras

    from recipes import detr_detection
    from recipes import dpt_depth
    from recipes import segmentation
    from recipes import vit_classification

    optimizer = keras.optimizers.AdamW(1e-4)
    if task == "classification":
        model = vit_classification.build_model(config, num_classes, channels)
        model.compile(optimizer=optimizer)
    elif task == "detection":
        model = detr_detection.build_model(config, num_classes)
        model.compile(optimizer=optimizer)
    elif task == "segmentation":
        model = segmentation.build_model(config, num_classes)
        model.compile(optimizer=optimizer, ignore_index=255)
    else:
        from keras_vit.losses import ScaleInvariantLogLoss

        model = dpt_depth.build_model(config, 2.0)
        model.compile(optimizer=optimizer, loss=ScaleInvariantLogLoss(), metrics=[])
    return model


def _measure(task, image_size, count):
    import keras
    import numpy as np

    from recipes import detr_detection
    from recipes import dpt_depth
    from recipes import segmentation
    from recipes import vit_classification

    module = {"classification": vit_classification, "detection": detr_detection,
              "segmentation": segmentation, "depth": dpt_depth}[task]
    config = dict(module.CONFIG)
    if image_size:
        config["image_size"] = image_size
        if "patch_size" in config and config["patch_size"]:
            config["patch_size"] = max(config["patch_size"], image_size // 16)
    size = config["image_size"]
    with tempfile.TemporaryDirectory() as folder:
        _write_folder(task, folder, size, count)
        config["dataset"] = f"folder:{folder}"
        data = module.load_data(config)
        train = data[0]
        if task == "classification":
            num_classes, channels = data[2], data[3]
        elif task == "depth":
            num_classes, channels = None, 3
        else:
            num_classes, channels = len(data[2]), 3
        batch = config["batch_size"]

        iterator = iter(train)
        next(iterator)  # warm-up: file listing, the first decode, tf.function tracing
        start, seen = time.perf_counter(), 0
        for _ in range(2):
            for x, _ in train:
                seen += int((x["images"] if isinstance(x, dict) else x).shape[0])
        pipeline = seen / (time.perf_counter() - start)

        keras.utils.set_random_seed(0)
        model = _model(task, config, num_classes, channels)
        cached = [(x, y) for x, y in train.repeat().take(10).as_numpy_iterator()]
        times = []
        for i, (x, y) in enumerate(cached):
            begin = time.perf_counter()
            model.train_on_batch(x, y)
            if i >= 2:
                times.append(time.perf_counter() - begin)
        step = batch / float(np.median(times))

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.begin = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds = time.perf_counter() - self.begin

        # One unbroken stream (the set repeated), so that the second epoch is
        # steady state: no iterator restart at the epoch boundary.
        timer, steps = EpochTimer(), count // batch
        model.fit(train.repeat(), epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[timer])
        fit = steps * batch / timer.seconds
    return {
        "task": task, "image_size": size, "batch_size": batch, "train_images": count,
        "pipeline_images_per_s": round(pipeline, 1), "step_images_per_s": round(step, 1),
        "fit_images_per_s": round(fit, 1),
        "pipeline_over_step": round(pipeline / step, 2), "fit_over_step": round(fit / step, 2),
    }


def _child(args):
    import keras

    rows = [_measure(task, args.image_size, args.images) for task in args.tasks.split(",")]
    print("RESULT " + json.dumps({"backend": keras.backend.backend(), "rows": rows}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--images", type=int, default=256, help="training images per task")
    parser.add_argument("--image-size", type=int, default=None, help="every task at this size (default: the recipes')")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    results = {"nproc": os.cpu_count(), "images": args.images, "backends": {}}
    header = f"{'backend':<11} {'task':<15} {'size':>4} {'pipeline':>9} {'step':>7} {'fit':>7} {'pipe/step':>9} {'fit/step':>8}"
    print("images per second\n" + header, flush=True)
    for backend in args.backends.split(","):
        command = [sys.executable, __file__, "--child", "--tasks", args.tasks, "--images", str(args.images)]
        if args.image_size:
            command += ["--image-size", str(args.image_size)]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        output = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
        if output.returncode or not lines:
            print(output.stdout[-3000:], output.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"the {backend} run failed (exit {output.returncode})")
        rows = json.loads(lines[-1][len("RESULT "):])["rows"]
        results["backends"][backend] = rows
        for row in rows:
            print(f"{backend:<11} {row['task']:<15} {row['image_size']:>4} {row['pipeline_images_per_s']:>9} "
                  f"{row['step_images_per_s']:>7} {row['fit_images_per_s']:>7} {row['pipeline_over_step']:>9} "
                  f"{row['fit_over_step']:>8}", flush=True)
    from keras_vit.utils.files import write_json_atomically

    suffix = f"_{args.image_size}" if args.image_size else ""
    write_json_atomically(os.path.join(ROOT, "benchmarks", f"results_input_pipeline{suffix}.json"), results)


if __name__ == "__main__":
    main()
