"""Swin Transformer checkpoints -> keras_vit `SwinBackbone` / `Swin`.

Three layouts, told apart by their names:

| layout | marker | merging | head |
|---|---|---|---|
| official (`microsoft/Swin-Transformer` `.pth`, `{"model": ...}`) | `layers.0.downsample.*` | end of stage i: `layers.{i}.downsample` | `head` |
| timm (`timm/swin_*` safetensors) | `layers.{i>0}.downsample.*` | start of stage i: `layers.{i}.downsample` | `head.fc` |
| transformers (`microsoft/swin-*`) | `swin.embeddings.patch_embeddings.projection.weight` | end of stage i: `swin.encoder.layers.{i}.downsample` | `classifier` |

Blocks: `layers.{i}.blocks.{j}.{norm1, attn.qkv, attn.proj,
attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}` (transformers:
`layernorm_before`, `attention.self.{query,key,value,relative_position_bias_table}`,
`attention.output.dense`, `layernorm_after`, `intermediate.dense`,
`output.dense`). The saved `relative_position_index` and `attn_mask`
buffers are derived from the window size and recomputed by the model, so
they are skipped, not loaded.

Everything but the input size is read from the tensors: the widths, the
blocks per stage, the head count of each stage (the bias tables' columns),
the window (a table has `(2W-1)^2` rows) and the MLP ratio. The image size
comes from a `config.json` beside the file when there is one, else from the
window: every Swin release is trained at `32 * W` pixels (224 for W = 7,
384 for W = 12).
"""

import math

import numpy as np

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import conv2d
from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy

_SKIPPED = ("relative_position_index", "attn_mask")
_TRANSFORMERS_MARKER = "embeddings.patch_embeddings.projection.weight"


def detect_swin_layout(arrays):
    """`"official"`, `"timm"` or `"transformers"`, or None when `arrays` is not a Swin checkpoint."""
    keys = list(arrays)
    if any(k.endswith(_TRANSFORMERS_MARKER) for k in keys) and any(
        ".attention.self.relative_position_bias_table" in k for k in keys
    ):
        return "transformers"
    if "patch_embed.proj.weight" not in arrays or not any(k.endswith("attn.relative_position_bias_table") for k in keys):
        return None
    if any(k.startswith("layers.0.downsample.") for k in keys):
        return "official"
    return "timm"


def _prefix(arrays):
    """The transformers prefix before `embeddings.` (`swin.` for the task models, `` for `SwinModel`)."""
    for key in arrays:
        if key.endswith(_TRANSFORMERS_MARKER):
            return key[: -len(_TRANSFORMERS_MARKER)]
    return ""


def _names(layout, arrays):
    """Name patterns of one layout: functions of (stage, block) -> prefix."""
    if layout == "transformers":
        p = _prefix(arrays)
        return {
            "patch": f"{p}embeddings.patch_embeddings.projection",
            "patch_norm": f"{p}embeddings.norm",
            "block": lambda s, b: f"{p}encoder.layers.{s}.blocks.{b}",
            "merging": lambda s: f"{p}encoder.layers.{s - 1}.downsample",  # before stage s (0-based s >= 1)
            "final_norm": f"{p}layernorm",
            "head": "classifier",
            "table": "attention.self.relative_position_bias_table",
        }
    return {
        "patch": "patch_embed.proj",
        "patch_norm": "patch_embed.norm",
        "block": lambda s, b: f"layers.{s}.blocks.{b}",
        "merging": (lambda s: f"layers.{s - 1}.downsample") if layout == "official" else (lambda s: f"layers.{s}.downsample"),
        "final_norm": "norm",
        "head": "head" if layout == "official" else "head.fc",
        "table": "attn.relative_position_bias_table",
    }


def swin_config_from_state_dict(arrays, image_size=None, hf_config=None):
    """`{"backbone": SwinBackbone arguments, "num_classes": int}` read off a
    Swin checkpoint's tensors (and its `config.json`, for the image size)."""
    layout = detect_swin_layout(arrays)
    if layout is None:
        raise ValueError("Not a Swin Transformer checkpoint: no patch embedding with relative position bias tables.")
    names = _names(layout, arrays)
    patch = to_numpy(arrays[f"{names['patch']}.weight"])
    hidden_dim, channels, patch_size, _ = patch.shape
    depths, num_heads = [], []
    stage = 0
    while f"{names['block'](stage, 0)}.{names['table']}" in arrays:
        depth = 0
        while f"{names['block'](stage, depth)}.{names['table']}" in arrays:
            depth += 1
        depths.append(depth)
        num_heads.append(int(to_numpy(arrays[f"{names['block'](stage, 0)}.{names['table']}"]).shape[1]))
        stage += 1
    rows = to_numpy(arrays[f"{names['block'](0, 0)}.{names['table']}"]).shape[0]
    window_size = (math.isqrt(rows) + 1) // 2
    if (2 * window_size - 1) ** 2 != rows:
        raise ValueError(f"The first relative position bias table has {rows} rows, not (2W-1)^2 for any window W.")
    fc1 = f"{names['block'](0, 0)}.{'intermediate.dense' if layout == 'transformers' else 'mlp.fc1'}.weight"
    mlp_ratio = to_numpy(arrays[fc1]).shape[0] / hidden_dim
    query_bias = "attention.self.query.bias" if layout == "transformers" else "attn.qkv.bias"
    if image_size is None and hf_config:
        size = hf_config.get("image_size")  # transformers' SwinConfig: an int or [H, W]
        if isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 2):
            image_size = size if isinstance(size, int) else tuple(size)
        elif (hf_config.get("pretrained_cfg") or {}).get("input_size"):  # timm's config.json
            image_size = tuple(hf_config["pretrained_cfg"]["input_size"][1:])
    if image_size is None:
        image_size = 32 * window_size
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    head = arrays.get(f"{names['head']}.weight")
    backbone = {
        "image_shape": (image_size[0], image_size[1], channels),
        "patch_size": int(patch_size),
        "hidden_dim": int(hidden_dim),
        "depths": tuple(depths),
        "num_heads": tuple(num_heads),
        "window_size": int(window_size),
        "mlp_ratio": float(mlp_ratio),
        "qkv_bias": f"{names['block'](0, 0)}.{query_bias}" in arrays,
        "layer_norm_epsilon": float((hf_config or {}).get("layer_norm_eps", 1e-5)),
    }
    return {"backbone": backbone, "num_classes": 0 if head is None else int(to_numpy(head).shape[0])}


def _block(block, arrays, prefix, layout):
    if layout == "transformers":
        layer_norm(block.norm1, arrays, f"{prefix}.layernorm_before")
        parts = [to_numpy(arrays[f"{prefix}.attention.self.{n}.weight"]) for n in ("query", "key", "value")]
        assign(block.attention.qkv.kernel, np.concatenate(parts, axis=0).T, f"{prefix}.attention.self.query/key/value.weight")
        if block.attention.qkv.bias is not None:
            biases = [to_numpy(arrays[f"{prefix}.attention.self.{n}.bias"]) for n in ("query", "key", "value")]
            assign(block.attention.qkv.bias, np.concatenate(biases), f"{prefix}.attention.self.query/key/value.bias")
        linear(block.attention.proj, arrays, f"{prefix}.attention.output.dense")
        table = f"{prefix}.attention.self.relative_position_bias_table"
        layer_norm(block.norm2, arrays, f"{prefix}.layernorm_after")
        linear(block.fc1, arrays, f"{prefix}.intermediate.dense")
        linear(block.fc2, arrays, f"{prefix}.output.dense")
    else:
        layer_norm(block.norm1, arrays, f"{prefix}.norm1")
        linear(block.attention.qkv, arrays, f"{prefix}.attn.qkv")
        linear(block.attention.proj, arrays, f"{prefix}.attn.proj")
        table = f"{prefix}.attn.relative_position_bias_table"
        layer_norm(block.norm2, arrays, f"{prefix}.norm2")
        linear(block.fc1, arrays, f"{prefix}.mlp.fc1")
        linear(block.fc2, arrays, f"{prefix}.mlp.fc2")
    value = to_numpy(arrays[table])
    if tuple(value.shape) != tuple(block.attention.relative_position_bias_table.shape):
        raise ValueError(
            f"Checkpoint tensor {table!r} is a table for a {(math.isqrt(value.shape[0]) + 1) // 2}-token window, "
            f"the block {block.name!r} uses a {block.attention.window_size}-token window (the window is clipped "
            "to a stage's resolution at small input sizes). Build the model at the checkpoint's image size, "
            "or with window_size equal to the checkpoint's."
        )
    assign(block.attention.relative_position_bias_table, value, table)


def load_swin_backbone(backbone, arrays, layout=None):
    """A Swin checkpoint's backbone tensors into a `SwinBackbone`; `arrays`
    is a `TrackedDict`. Returns the layout's names (for the head)."""
    layout = layout or detect_swin_layout(arrays)
    names = _names(layout, arrays)
    conv2d(backbone.get_layer("patch_embedding"), arrays, names["patch"])
    layer_norm(backbone.get_layer("patch_norm"), arrays, names["patch_norm"])
    for stage, depth in enumerate(backbone.depths):
        if stage:
            merging = backbone.get_layer(f"stage_{stage + 1}_merging")
            layer_norm(merging.norm, arrays, f"{names['merging'](stage)}.norm")
            linear(merging.reduction, arrays, f"{names['merging'](stage)}.reduction")
        for index in range(depth):
            _block(backbone.get_layer(f"stage_{stage + 1}_block_{index}"), arrays, names["block"](stage, index), layout)
    if f"{names['final_norm']}.weight" in arrays:
        layer_norm(backbone.get_layer("final_norm"), arrays, names["final_norm"])
    return names


def load_swin_state_dict(model, arrays):
    """Copies a Swin checkpoint (any of the three layouts) into a
    `keras_vit.Swin` classifier or a `SwinBackbone` built with its sizes
    (`swin_config_from_state_dict`). A classifier's head is loaded when the
    file has one; an unused tensor raises."""
    from keras_vit.backbones.swin_backbone import SwinBackbone

    arrays = TrackedDict(arrays)
    layout = detect_swin_layout(arrays)
    if layout is None:
        raise ValueError("Not a Swin Transformer checkpoint: no patch embedding with relative position bias tables.")
    backbone = model if isinstance(model, SwinBackbone) else model.backbone
    names = load_swin_backbone(backbone, arrays, layout)
    head_keys = (f"{names['head']}.weight", f"{names['head']}.bias")
    if backbone is not model and model.num_classes and head_keys[0] in arrays:
        linear(model.get_layer("head"), arrays, names["head"])
    ignore = [k for k in arrays if k.split(".")[-1] in _SKIPPED]
    if backbone is model or not model.num_classes:
        ignore += [k for k in head_keys if k in arrays]
    check_all_used(arrays, arrays.used | set(ignore), f"Swin ({layout})")
    return model
