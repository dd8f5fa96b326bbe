"""A few training steps of a tiny ViT and a tiny DETR under one distribution
mode, written to an .npz (weights, losses): the worker process of
tests/test_distribution.py. A process of its own because the device count
(XLA's virtual host devices, TF's logical CPUs, torchrun's processes) is
fixed before the backend starts.

    python tests/distributed_worker.py OUT MODE [MODE ...] [--model-parallel N] [--logical-cpus N]

Each MODE writes OUT-MODE.npz (under torchrun: OUT-MODE-rankR.npz).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GLOBAL_BATCH = 8
STEPS = 2


def vit_case():
    import numpy as np

    import keras_vit

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(GLOBAL_BATCH * STEPS, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 5, size=(GLOBAL_BATCH * STEPS,))

    def build():
        backbone = keras_vit.ViTBackbone(
            image_shape=(12, 12, 3), patch_size=3, hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32,
        )
        preprocessor = keras_vit.ViTImagePreprocessor(12, mean=0.5, std=0.5, scale=1 / 255.0)
        return keras_vit.ViT(backbone, num_classes=5, preprocessor=preprocessor)

    return build, x, y, 0.05


def detr_case():
    import keras_vit
    from keras_vit.data.shapes import make_shapes

    images, targets = make_shapes(GLOBAL_BATCH * STEPS, 32, max_objects=3, seed=0)

    def build():
        # Channel counts and bottleneck widths (a quarter) divisible by a 4-way model axis.
        backbone = keras_vit.ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(16, 16, 16, 16))
        return keras_vit.DETR(
            backbone, num_classes=3, num_queries=5, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=2,
            ffn_dim=16, dropout_rate=0.0, bounding_box_format="xyxy",
        )

    return build, images.astype("float32"), {"labels": targets["labels"], "boxes": targets["boxes"]}, 0.01


def vitdet_case():
    """DETR on a tiny ViTDet (window and global blocks, the simple pyramid):
    widths divisible by a 4-way model axis."""
    import keras_vit
    from keras_vit.data.shapes import make_shapes

    images, targets = make_shapes(GLOBAL_BATCH * STEPS, 32, max_objects=3, seed=0)

    def build():
        backbone = keras_vit.ViTDetBackbone(
            image_shape=(32, 32, 3), patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, window_size=3,
            global_attention_blocks=(1,), pyramid_dim=16,
        )
        return keras_vit.DETR(
            backbone, num_classes=3, num_queries=5, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1,
            ffn_dim=16, dropout_rate=0.0, bounding_box_format="xyxy",
        )

    return build, images.astype("float32"), {"labels": targets["labels"], "boxes": targets["boxes"]}, 0.01


CASES = {"vit": vit_case, "detr": detr_case, "vitdet": vitdet_case}


def train(plan, case):
    import keras
    import numpy as np

    from keras_vit.data import EpochBatches

    build, x, y, learning_rate = case()
    keras.utils.set_random_seed(7)
    with plan.scope():
        model = build()
        plan.prepare_model(model)
        # SGD: the weights then differ only as the gradients do (Adam would
        # amplify float noise in gradients that are zero in exact arithmetic,
        # such as attention key biases).
        model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9))
        batches = EpochBatches(
            x, y, GLOBAL_BATCH, shuffle=False, drop_remainder=True, shard=plan.process_shard()
        )
        history = model.fit(batches, epochs=2, shuffle=False, verbose=0, callbacks=plan.fit_callbacks())
    # By position: auto-numbered layer names differ between models built in one process.
    weights = {f"{i:03d}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(model.weights)}
    return model, weights, np.asarray(history.history["loss"], "float64")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("modes", nargs="+")
    parser.add_argument("--model-parallel", type=int, default=None)
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--cases", default="vit,detr", help="comma-separated: vit, detr, vitdet")
    args = parser.parse_args()
    import keras

    if args.logical_cpus and keras.backend.backend() == "tensorflow":
        from keras_vit.backend.tf_distribute import split_logical_cpus

        split_logical_cpus(args.logical_cpus)
    import numpy as np

    from keras_vit import distribution

    import keras_vit

    layout_maps = {
        "vit": keras_vit.ViTBackbone.get_layout_map,
        "detr": keras_vit.DETR.get_layout_map,
        "vitdet": lambda mesh, *args: keras_vit.DETR.get_layout_map(mesh, *args, backbone_class=keras_vit.ViTDetBackbone),
    }
    for mode in args.modes:
        record = {}
        if mode != "model":
            plan = distribution.configure(mode)
        for name in args.cases.split(","):
            case = CASES[name]
            if mode == "model":  # each task's own layout map, set before its model is built
                plan = distribution.configure(mode, args.model_parallel, layout_map=layout_maps[name])
            record.update(replicas=plan.replicas, processes=plan.process_count)
            model, weights, losses = train(plan, case)
            record[f"{name}_losses"] = losses
            for path, value in weights.items():
                record[f"{name}/{path}"] = value
            if mode == "model":
                # Where the kernels really live: the shard shapes on device 0.
                for v in model.weights:
                    if v.path.endswith(("qkv/kernel", "fc2/kernel", "query/kernel", "layer2_0_conv2/kernel", "lateral/kernel")):
                        shard = v.value.addressable_shards[0].data.shape
                        path = v.path if name != "vitdet" else f"vitdet/{v.path}"
                        record[f"shard/{path}"] = np.asarray(shard)
                        record[f"spec/{path}"] = np.asarray(str(v.value.sharding.spec))
        suffix = f"-rank{plan.process_index}" if plan.process_count > 1 else ""
        np.savez(f"{args.out}-{mode}{suffix}.npz", **record)
        print(f"wrote {args.out}-{mode}{suffix}.npz ({plan.describe()})", flush=True)
    if keras.backend.backend() == "torch":
        from keras_vit.backend import torch_distributed

        torch_distributed.shutdown()


if __name__ == "__main__":
    main()
