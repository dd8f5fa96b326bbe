"""Prints the measured max abs differences against timm and transformers.

    KERAS_BACKEND=jax python benchmarks/equivalence_report.py [--full]

The tests assert <= 1e-4; this reports the actual numbers for the docs and
issue notes. `--full` adds ViT-B/16 and R50+ViT-B/16 (slow on CPU).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from torchvision_shim import declare_torchvision_ops  # noqa: E402

declare_torchvision_ops()

import keras  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from keras_vit.conversion import load_timm_state_dict  # noqa: E402
from keras_vit.conversion import load_transformers_state_dict  # noqa: E402
from keras_vit.conversion import vit_config_from_timm  # noqa: E402
from keras_vit.conversion import vit_config_from_transformers  # noqa: E402
from reference_models import images  # noqa: E402
from reference_models import keras_model  # noqa: E402
from reference_models import max_abs_diff  # noqa: E402
from reference_models import randomize  # noqa: E402


def timm_case(reference, heads, shape):
    state_dict = reference.state_dict()
    model = load_timm_state_dict(keras_model(vit_config_from_timm(state_dict, num_heads=heads)), state_dict)
    x, x_torch = images(shape)
    with torch.no_grad():
        return max_abs_diff(model(x), reference(x_torch))


def hf_case(reference, shape):
    model = keras_model(vit_config_from_transformers(reference.config))
    load_transformers_state_dict(model, reference.state_dict())
    x, x_torch = images(shape)
    with torch.no_grad():
        return max_abs_diff(model(x), reference(pixel_values=x_torch).logits)


def main():
    rows = []
    tiny = dict(img_size=30, patch_size=3, embed_dim=32, depth=2, num_heads=4, mlp_ratio=37 / 32, num_classes=5)
    rows.append(("timm tiny (30px, patch 3, width 32)", timm_case(
        randomize(timm.models.vision_transformer.VisionTransformer(**tiny)), 4, (2, 30, 30, 3))))
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=37, image_size=30, patch_size=3, num_labels=5)
    rows.append(("transformers tiny", hf_case(randomize(transformers.ViTForImageClassification(config)), (2, 30, 30, 3))))
    if "--full" in sys.argv:
        rows.append(("timm ViT-B/16 (224)", timm_case(
            randomize(timm.create_model("vit_base_patch16_224"), std=0.02), 12, (1, 224, 224, 3))))
        rows.append(("transformers ViT-B/16 (224)", hf_case(
            randomize(transformers.ViTForImageClassification(transformers.ViTConfig(num_labels=1000)), std=0.02),
            (1, 224, 224, 3))))
        rows.append(("timm R50+ViT-B/16 (384)", timm_case(
            randomize(timm.create_model("vit_base_r50_s16_384"), std=0.02), 12, (1, 384, 384, 3))))
    for name, diff in rows:
        print(f"{keras.backend.backend():10s} {name:40s} max abs diff {diff:.2e}")


if __name__ == "__main__":
    main()
