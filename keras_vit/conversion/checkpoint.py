"""Reading a checkpoint file of any supported source into a keras_vit `ViT`.

Formats, told apart by their tensor names:

| format | file types | marker key |
|---|---|---|
| original ViT | `.npz` | `embedding/kernel` |
| timm | `.safetensors`, `.pth`, `.bin` | `patch_embed.proj.weight` |
| transformers | `.safetensors`, `.bin` | `...embeddings.patch_embeddings.projection.weight` |

No reader unpickles code: `.npz` with `allow_pickle=False`, safetensors,
torch files with `torch.load(weights_only=True)`, and detectron2's `.pkl`
with an unpickler that builds numpy arrays only (`detectron2_pickle.py`).
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

CHECKPOINT_EXTENSIONS = (".npz", ".safetensors", ".pth", ".pt", ".bin", ".pyth", ".pkl")

# Head counts of timm's ViT architecture names (`vit_base_patch16_224`,
# `deit_tiny_...`, `vit_base_r50_s16_384`), ViT paper Table 1 and DeiT.
_TIMM_SIZE_HEADS = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}


def read_checkpoint(path):
    """Returns `{name: numpy array}` from a checkpoint file."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npz":
        return load_npz(path)
    if extension == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(
                f"Cannot read {path} as safetensors ({error}): the file is truncated, empty or not "
                "a safetensors file. Download it again (delete it first if it is in the keras_vit cache)."
            ) from error
    if extension in (".pth", ".bin", ".pt", ".pyth"):  # .pyth: MViT's official torch files
        from keras_vit.backend.torch_checkpoint import load_torch_state_dict

        return load_torch_state_dict(path)
    if extension == ".pkl":  # detectron2's model zoo (ViTDet): numpy arrays only
        from keras_vit.conversion.detectron2_pickle import load_detectron2_pickle

        return load_detectron2_pickle(path)
    raise ValueError(
        f"Unsupported checkpoint file {path!r}: expected one of {CHECKPOINT_EXTENSIONS}."
    )


def detect_format(arrays):
    if any(k.endswith("relative_position_bias_table") for k in arrays):
        raise ValueError(
            "This checkpoint has relative position bias tables: a Swin Transformer, not a ViT. "
            "Load it with keras_vit.Swin.from_preset."
        )
    if any(k.endswith("attn.rel_pos_h") for k in arrays) and any(k.endswith("attn.pool_q.weight") for k in arrays):
        raise ValueError(
            "This checkpoint has pooling attention with relative positions: an MViTv2, not a ViT. "
            "Load it with keras_vit.MViT.from_preset."
        )
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


def _incomplete(error, source_format):
    """A tensor the checkpoint's own layout implies is missing: a partial file."""
    key = error.args[0] if error.args else error
    return ValueError(
        f"This {source_format} checkpoint is incomplete or not a ViT of the layout its other tensors "
        f"imply: {key} Download the file again (a partial download?), or load it with the "
        "library that wrote it."
    )


def config_from_checkpoint(arrays, source_format=None, hf_config=None, num_heads=None):
    """keras_vit preset config (`backbone`, `classifier`) for a checkpoint."""
    source_format = source_format or detect_format(arrays)
    try:
        return _config_from_checkpoint(arrays, source_format, hf_config, num_heads)
    except KeyError as error:
        raise _incomplete(error, source_format) from None


def _config_from_checkpoint(arrays, source_format, hf_config, num_heads):
    if source_format == "npz":
        return vit_config_from_npz(arrays)
    if source_format == "transformers":
        if hf_config is None:
            raise ValueError(
                "A transformers checkpoint needs its config.json (the ViTConfig) to be "
                "converted: pass hf_config, or keep config.json next to the weights."
            )
        return vit_config_from_transformers(hf_config)
    heads = num_heads or timm_num_heads(hf_config)
    if heads is None:
        width = arrays["patch_embed.proj.weight"].shape[0]
        raise ValueError(
            f"The number of attention heads of this timm checkpoint (width {width}) is not stored "
            "in its tensors, and no timm config.json (written by timm's save_for_hf, with "
            "`architecture` or `model_args`) lies beside it. Pass num_heads=... (e.g. "
            "ViT.from_preset(path, num_heads=12) for ViT-B), or keep the config.json next to the weights."
        )
    return vit_config_from_timm(arrays, num_heads=heads)


def timm_num_heads(hf_config):
    """The head count a timm `config.json` states: `model_args["num_heads"]`, or the
    size in its `architecture` name; None when it states neither."""
    if not hf_config or "architecture" not in hf_config:
        return None
    model_args = hf_config.get("model_args") or {}
    if "num_heads" in model_args:
        return int(model_args["num_heads"])
    parts = str(hf_config["architecture"]).split("_")
    if len(parts) > 1 and parts[0] in ("vit", "deit") and parts[1] in _TIMM_SIZE_HEADS:
        return _TIMM_SIZE_HEADS[parts[1]]
    return None


def load_checkpoint_weights(model, arrays, source_format=None):
    source_format = source_format or detect_format(arrays)
    loader = {
        "npz": load_npz_weights,
        "timm": load_timm_state_dict,
        "transformers": load_transformers_state_dict,
    }[source_format]
    try:
        return loader(model, arrays)
    except KeyError as error:
        raise _incomplete(error, source_format) from None


def read_hf_config(path):
    """The `config.json` beside a checkpoint file, if any."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            return json.load(f)
    return None
