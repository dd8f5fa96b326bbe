"""Reading a checkpoint file of any supported source into a keras_vit `ViT`.

Formats, told apart by their tensor names:

| format | file types | marker key |
|---|---|---|
| original ViT | `.npz` | `embedding/kernel` |
| timm | `.safetensors`, `.pth`, `.bin` | `patch_embed.proj.weight` |
| transformers | `.safetensors`, `.bin` | `...embeddings.patch_embeddings.projection.weight` |

No reader unpickles code: `.npz` with `allow_pickle=False`, safetensors, and
torch files with `torch.load(weights_only=True)`.
"""

import json
import os

from keras_vit.conversion.npz import load_npz
from keras_vit.conversion.npz import load_npz_weights
from keras_vit.conversion.npz import vit_config_from_npz
from keras_vit.conversion.timm import load_timm_state_dict
from keras_vit.conversion.timm import vit_config_from_timm
from keras_vit.conversion.transformers import load_transformers_state_dict
from keras_vit.conversion.transformers import vit_config_from_transformers
from keras_vit.presets.vit_presets import VARIANTS

CHECKPOINT_EXTENSIONS = (".npz", ".safetensors", ".pth", ".bin")

# Head count by width for the standard variants (timm files do not store it).
_HEADS_BY_WIDTH = {width: heads for width, _, _, heads in VARIANTS.values()}


def read_checkpoint(path):
    """Returns `{name: numpy array}` from a checkpoint file."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npz":
        return load_npz(path)
    if extension == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(path)
    if extension in (".pth", ".bin", ".pt"):
        from keras_vit.backend.torch_checkpoint import load_torch_state_dict

        return load_torch_state_dict(path)
    raise ValueError(
        f"Unsupported checkpoint file {path!r}: expected one of {CHECKPOINT_EXTENSIONS}."
    )


def detect_format(arrays):
    if "embedding/kernel" in arrays:
        return "npz"
    if "patch_embed.proj.weight" in arrays:
        return "timm"
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in arrays):
        return "transformers"
    raise ValueError(
        "Cannot tell the checkpoint's source: none of 'embedding/kernel' (original "
        "ViT), 'patch_embed.proj.weight' (timm) or "
        "'embeddings.patch_embeddings.projection.weight' (transformers) is present. "
        f"First keys: {sorted(arrays)[:6]}"
    )


def config_from_checkpoint(arrays, source_format=None, hf_config=None, num_heads=None):
    """keras_vit preset config (`backbone`, `classifier`) for a checkpoint."""
    source_format = source_format or detect_format(arrays)
    if source_format == "npz":
        return vit_config_from_npz(arrays)
    if source_format == "transformers":
        if hf_config is None:
            raise ValueError(
                "A transformers checkpoint needs its config.json (the ViTConfig) to be "
                "converted: pass hf_config, or keep config.json next to the weights."
            )
        return vit_config_from_transformers(hf_config)
    width = arrays["patch_embed.proj.weight"].shape[0]
    heads = num_heads or _HEADS_BY_WIDTH.get(width, max(width // 64, 1))
    return vit_config_from_timm(arrays, num_heads=heads)


def load_checkpoint_weights(model, arrays, source_format=None):
    source_format = source_format or detect_format(arrays)
    loader = {
        "npz": load_npz_weights,
        "timm": load_timm_state_dict,
        "transformers": load_transformers_state_dict,
    }[source_format]
    return loader(model, arrays)


def read_hf_config(path):
    """The `config.json` beside a checkpoint file, if any."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            return json.load(f)
    return None
