"""The ViT paper's Figure 7, and attention maps, for any keras_vit ViT preset.

    python -m recipes.figure7 --preset runs/vit_classification/preset --output runs/figure7

Writes four PNGs: the principal components of the patch-embedding filters, the
cosine similarity of the position embeddings, the mean attention distance per
head and layer (over held-out digits, or random images for other presets) and
attention rollout over a few images.
"""

import argparse
import os

import keras
import numpy as np

import keras_vit
from keras_vit import visualization


def images_for(model, count, seed=0):
    """Held-out digits for a digits model, otherwise random preprocessed images."""
    shape = model.backbone.image_shape
    if shape[-1] == 1:
        from keras_vit.data.digits import load_digits

        _, (x, _) = load_digits(image_size=shape[0], seed=seed)
        return x[:count], keras.ops.convert_to_numpy(model.preprocessor(x[:count]))
    x = np.random.default_rng(seed).uniform(0, 1, size=(count,) + shape).astype("float32")
    return x, x * 2.0 - 1.0


def run(preset, output, count=64):
    os.makedirs(output, exist_ok=True)
    model = keras_vit.ViT.from_preset(preset)
    backbone = model.backbone
    paths = {}

    kernel = keras.ops.convert_to_numpy(backbone.get_layer("patch_embedding").projection.kernel)
    figure = visualization.plot_patch_embedding_components(kernel)
    paths["filters"] = os.path.join(output, "embedding_filters.png")
    figure.savefig(paths["filters"], dpi=120)

    table = keras.ops.convert_to_numpy(backbone.get_layer("position_embedding").embedding)
    figure = visualization.plot_position_embedding_similarity(
        table, backbone.grid_size, backbone.num_prefix_tokens
    )
    paths["positions"] = os.path.join(output, "position_similarity.png")
    figure.savefig(paths["positions"], dpi=120)

    raw, x = images_for(model, count)
    attention = {
        k: keras.ops.convert_to_numpy(v) for k, v in backbone.attention_maps(x)["attention"].items()
    }
    distances = visualization.mean_attention_distance(
        attention, backbone.grid_size, backbone.patch_size, backbone.num_prefix_tokens
    )
    figure = visualization.plot_mean_attention_distance(distances)
    paths["distance"] = os.path.join(output, "attention_distance.png")
    figure.savefig(paths["distance"], dpi=120)

    if backbone.use_class_token:
        rollout = visualization.attention_rollout(
            {k: v[:8] for k, v in attention.items()}, backbone.grid_size
        )
        figure = visualization.plot_attention_maps(raw[:8], rollout)
        paths["rollout"] = os.path.join(output, "attention_rollout.png")
        figure.savefig(paths["rollout"], dpi=120)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, help="preset name or directory")
    parser.add_argument("--output", default="runs/figure7")
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args(argv)
    for name, path in run(args.preset, args.output, args.images).items():
        print(f"{name:10s} {path}")


if __name__ == "__main__":
    main()
