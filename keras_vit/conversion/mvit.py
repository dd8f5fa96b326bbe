"""MViTv2 checkpoints -> keras_vit `MViTBackbone` / `MViT`.

Two layouts:

| layout | blocks | shortcut projection | head |
|---|---|---|---|
| timm (`timm/mvitv2_*` safetensors) | `stages.{i}.blocks.{j}` | `shortcut_proj_attn` / `shortcut_proj_mlp` | `head.fc` |
| official (`facebookresearch/mvit` `.pyth`, `{"model_state": ...}`) | flat `blocks.{N}` | `proj` | `head.projection` |

A block: `norm1`, `attn.{qkv, proj, pool_q, norm_q, pool_k, norm_k,
pool_v, norm_v, rel_pos_h, rel_pos_w}`, `norm2`, `mlp.{fc1, fc2}`; then
`norm` and the head.

The architecture is read from the tensors, not from names or a config
(timm's `MultiScaleVitCfg` is not written to its `config.json`): each
block's input width (`norm1`), attention width (`qkv` rows / 3), output
width (`mlp.fc2`) and head width (the relative-position tables' columns,
hence its head count); stages start where the width changes (in a block's
attention for T/S/B, after a block's MLP for L); the image size from the
first table's length (`2 * S/4 - 1` rows). What cannot be told apart
raises a `ValueError` naming it.
"""

import re

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import conv2d
from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy


def detect_mvit_layout(arrays):
    """`"timm"` or `"official"`, or None when `arrays` is not an MViTv2 checkpoint."""
    keys = list(arrays)
    if "patch_embed.proj.weight" not in arrays or not any(k.endswith("attn.rel_pos_h") for k in keys):
        return None
    if any(k.startswith("stages.") for k in keys):
        return "timm"
    if any(k.startswith("blocks.") for k in keys):
        return "official"
    return None


def _block_prefixes(arrays, layout):
    """Every block's checkpoint prefix in network order, grouped by stage
    for timm (flat for the official layout: one list)."""
    if layout == "timm":
        found = {}
        for key in arrays:
            match = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.norm1\.weight$", key)
            if match:
                found.setdefault(int(match.group(1)), []).append(int(match.group(2)))
        return [[f"stages.{s}.blocks.{b}" for b in sorted(found[s])] for s in sorted(found)]
    indices = sorted(int(m.group(1)) for k in arrays if (m := re.match(r"blocks\.(\d+)\.norm1\.weight$", k)))
    return [[f"blocks.{i}" for i in indices]]


def _dims(arrays, prefix):
    """`(input, attention, output, head width)` of one block."""
    def rows(name):
        return to_numpy(arrays[f"{prefix}.{name}"]).shape

    return rows("norm1.weight")[0], rows("attn.qkv.weight")[0] // 3, rows("mlp.fc2.weight")[0], rows("attn.rel_pos_h")[1]


def mvit_config_from_state_dict(arrays, hf_config=None):
    """`{"backbone": MViTBackbone arguments, "num_classes": int}` read off
    an MViTv2 checkpoint's tensors."""
    layout = detect_mvit_layout(arrays)
    if layout is None:
        raise ValueError("Not an MViTv2 checkpoint: no patch embedding with relative-position tables.")
    groups = _block_prefixes(arrays, layout)
    flat = [p for group in groups for p in group]
    dims = [_dims(arrays, p) for p in flat]
    expand = [d[1] == d[2] != d[0] for d in dims]
    narrow = [d[1] == d[0] != d[2] for d in dims]
    if any(expand) and any(narrow):
        raise ValueError(
            "Cannot infer where this MViTv2 changes width: some blocks change it in their attention, others in "
            "their MLP (keras_vit builds one of the two layouts)."
        )
    expand_attention = not any(narrow)
    if layout == "official":
        # Stage boundaries from the width changes.
        stages, current = [], []
        for prefix, d, e, n in zip(flat, dims, expand, narrow):
            if e and current:
                stages.append(current)
                current = []
            current.append(prefix)
            if n:
                stages.append(current)
                current = []
        if current:
            stages.append(current)
        groups = stages
    depths = tuple(len(g) for g in groups)
    widths, heads = [], []
    for group in groups:
        d_in, d_attn, d_out, head_width = _dims(arrays, group[0])
        widths.append(d_out if expand_attention else d_in)
        if d_attn % head_width:
            raise ValueError(
                f"Cannot infer the head count of {group[0]}: its attention width {d_attn} is not a multiple of its "
                f"relative-position tables' width {head_width}."
            )
        heads.append(d_attn // head_width)
    table = to_numpy(arrays[f"{groups[0][0]}.attn.rel_pos_h"]).shape[0]
    size = 4 * (table + 1) // 2
    patch = to_numpy(arrays["patch_embed.proj.weight"])
    first = dims[0]
    head_key = "head.fc.weight" if layout == "timm" else "head.projection.weight"
    head = arrays.get(head_key)
    backbone = {
        "image_shape": (size, size, int(patch.shape[1])),
        "hidden_dim": _compact(widths),
        "depths": depths,
        "num_heads": _compact(heads),
        "expand_attention": expand_attention,
        "mlp_ratio": to_numpy(arrays[f"{flat[0]}.mlp.fc1.weight"]).shape[0] / first[1],
        "qkv_bias": f"{flat[0]}.attn.qkv.bias" in arrays,
    }
    return {"backbone": backbone, "num_classes": 0 if head is None else int(to_numpy(head).shape[0])}


def _compact(values):
    """An int when the values double per stage (timm's config), else the tuple."""
    if all(v == values[0] * 2**i for i, v in enumerate(values)):
        return int(values[0])
    return tuple(int(v) for v in values)


def _depthwise(layer, arrays, key):
    """torch depthwise Conv2d `(C, 1, kh, kw)` -> Keras DepthwiseConv2D `(kh, kw, C, 1)`."""
    assign(layer.kernel, to_numpy(arrays[key]).transpose(2, 3, 0, 1), key)


def _block(block, arrays, prefix, layout):
    layer_norm(block.norm1, arrays, f"{prefix}.norm1")
    layer_norm(block.norm2, arrays, f"{prefix}.norm2")
    linear(block.fc1, arrays, f"{prefix}.mlp.fc1")
    linear(block.fc2, arrays, f"{prefix}.mlp.fc2")
    for name in ("shortcut_proj_attn", "shortcut_proj_mlp"):
        layer = getattr(block, name)
        if layer is not None:
            linear(layer, arrays, f"{prefix}.{name if layout == 'timm' else 'proj'}")
    attention = block.attention
    linear(attention.qkv, arrays, f"{prefix}.attn.qkv")
    linear(attention.proj, arrays, f"{prefix}.attn.proj")
    for part in "qkv":
        _depthwise(getattr(attention, f"pool_{part}"), arrays, f"{prefix}.attn.pool_{part}.weight")
        layer_norm(getattr(attention, f"norm_{part}"), arrays, f"{prefix}.attn.norm_{part}")
    for name in ("rel_pos_h", "rel_pos_w"):
        key = f"{prefix}.attn.{name}"
        value = to_numpy(arrays[key])
        variable = getattr(attention, name)
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"Checkpoint tensor {key!r} has {value.shape[0]} relative positions, the block built at "
                f"{attention.input_size} has {variable.shape[0]}: build the model at the checkpoint's image size."
            )
        assign(variable, value, key)


def load_mvit_state_dict(model, arrays):
    """Copies an MViTv2 checkpoint (timm or official layout) into a
    `keras_vit.MViT` or `MViTBackbone` built with its sizes
    (`mvit_config_from_state_dict`); an unused tensor raises."""
    from keras_vit.backbones.mvit_backbone import MViTBackbone

    arrays = TrackedDict(arrays)
    layout = detect_mvit_layout(arrays)
    if layout is None:
        raise ValueError("Not an MViTv2 checkpoint: no patch embedding with relative-position tables.")
    backbone = model if isinstance(model, MViTBackbone) else model.backbone
    conv2d(backbone.get_layer("patch_embedding"), arrays, "patch_embed.proj")
    flat = [p for group in _block_prefixes(arrays, layout) for p in group]
    blocks = backbone.blocks()
    if len(flat) != len(blocks):
        raise ValueError(f"The checkpoint has {len(flat)} blocks, the model {len(blocks)}: build it with the checkpoint's depths.")
    for block, prefix in zip(blocks, flat):
        _block(block, arrays, prefix, layout)
    layer_norm(backbone.get_layer("final_norm"), arrays, "norm")
    head = "head.fc" if layout == "timm" else "head.projection"
    if backbone is not model and model.num_classes and f"{head}.weight" in arrays:
        linear(model.get_layer("head"), arrays, head)
    ignore = ()
    if backbone is model or not model.num_classes:
        ignore = ("head.",)
    check_all_used(arrays, arrays.used, f"MViTv2 ({layout})", ignore=ignore)
    return model

