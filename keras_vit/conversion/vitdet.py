"""ViTDet checkpoints -> keras_vit `ViTDetBackbone`.

Three layouts, told apart by their tensor names:

| layout | source | plain ViT | pyramid |
|---|---|---|---|
| detectron2 | model-zoo `.pkl` (`{"model": {name: ndarray}}`) | `backbone.net.{pos_embed, patch_embed.proj, blocks.N.*}` | `backbone.simfp_{2..5}.*` |
| transformers | `VitDetBackbone.save_pretrained` (`model.safetensors` + `config.json`) | `embeddings.{position_embeddings, projection}`, `encoder.layer.N.*` | none |
| timm (MAE) | `vit_*_patch*_224.mae` | `pos_embed`, `patch_embed.proj`, `blocks.N.*` | none |

A block: `norm1`, `attn.{qkv, proj, rel_pos_h, rel_pos_w}` (transformers:
`attention.*`), `norm2`, `mlp.{fc1, fc2}`, optionally `residual.{conv1,
norm1, conv2, norm2, conv3, norm3}`. detectron2's pyramid stages are
`nn.Sequential`s: `simfp_2` = ConvT `0`, LN `1`, GELU, ConvT `3`, conv `4`
(+ `4.norm`), conv `5` (+ `5.norm`); `simfp_3` = ConvT `0`, conv `1`, conv
`2`; `simfp_4` = conv `0`, conv `1`; `simfp_5` = max-pool `0`, conv `1`, conv
`2`. Everything in the `.pkl` outside `backbone.` (the Mask R-CNN heads) is
not part of the backbone and is left out.

The architecture is read from the tensors (and `config.json` where one
is given): the width, patch and channel count from the patch embedding,
the depth from the blocks, the head count from the relative tables' width,
the window from the window blocks' tables (`2 w - 1` rows) and the global
blocks as those whose tables are longer (their length gives
`rel_pos_grid`). A checkpoint without relative tables (MAE) takes the
paper's layout for its width (window 14, global blocks the last of each
quarter, tables for a 64 x 64 grid, zero-initialised as detectron2 does).
Files without a pyramid leave it freshly initialised, with a warning.
"""

import re
import warnings

import numpy as np

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import conv2d
from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy

# Head counts of the ViT widths ViTDet uses (ViT paper Table 1; MAE has no
# relative tables to read them from).
_HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1280: 16}
_PAPER_WINDOW = 14
_PAPER_IMAGE_SIZE = 1024


def detect_vitdet_layout(arrays):
    """`"detectron2"`, `"transformers"` or `"timm"` (a ViT without head, as
    MAE's), or None when `arrays` is none of them."""
    if "backbone.net.patch_embed.proj.weight" in arrays:
        return "detectron2"
    if "embeddings.projection.weight" in arrays and any(k.startswith("encoder.layer.") for k in arrays):
        return "transformers"
    if (
        "patch_embed.proj.weight" in arrays
        and "blocks.0.attn.qkv.weight" in arrays
        and not any(k.startswith(("head.", "stages.")) or "pool_q" in k for k in arrays)
    ):
        return "timm"
    return None


def _plain(arrays, layout):
    """The plain ViT's tensors under detectron2's `net` names
    (`pos_embed`, `patch_embed.proj.*`, `blocks.N.{norm1, attn.*, ...}`),
    with the source key of each, and the ignored prefixes."""
    renamed = {}
    if layout == "detectron2":
        for key in arrays:
            if key.startswith("backbone.net."):
                renamed[key[len("backbone.net."):]] = key
        return renamed
    if layout == "timm":
        return {key: key for key in arrays}
    for key in arrays:
        name = key.replace("embeddings.position_embeddings", "pos_embed").replace(
            "embeddings.projection", "patch_embed.proj"
        )
        name = re.sub(r"^encoder\.layer\.", "blocks.", name).replace(".attention.", ".attn.")
        renamed[name] = key
    return renamed


def _block_count(names):
    indices = {int(m.group(1)) for k in names if (m := re.match(r"blocks\.(\d+)\.", k))}
    if indices != set(range(len(indices))):
        raise ValueError(f"The checkpoint's blocks are not numbered 0..N-1: {sorted(indices)}")
    return len(indices)


def vitdet_config_from_state_dict(arrays, hf_config=None):
    """The `ViTDetBackbone` config of a checkpoint's tensors (see the module doc)."""
    layout = detect_vitdet_layout(arrays)
    if layout is None:
        raise ValueError("Not a ViTDet checkpoint: no ViT patch embedding in a layout keras_vit converts.")
    names = _plain(arrays, layout)

    def get(name):
        if name not in names:
            raise KeyError(f"The checkpoint has no tensor for {name!r} ({layout} layout).")
        return to_numpy(arrays[names[name]])

    hf = hf_config or {}
    projection = get("patch_embed.proj.weight")
    hidden_dim, channels, patch_size = int(projection.shape[0]), int(projection.shape[1]), int(projection.shape[2])
    num_layers = _block_count(names)
    positions = get("pos_embed").reshape(-1, hidden_dim).shape[0]
    grid = int(round((positions - 1) ** 0.5))
    if grid * grid != positions - 1:
        raise ValueError(
            f"pos_embed has {positions} rows, not a class row plus a square grid (detectron2's "
            "pretrain_use_cls_token layout, the only one keras_vit converts)."
        )
    tables = {}
    for index in range(num_layers):
        if f"blocks.{index}.attn.rel_pos_h" in names:
            tables[index] = (get(f"blocks.{index}.attn.rel_pos_h").shape, get(f"blocks.{index}.attn.rel_pos_w").shape)
    use_rel_pos = bool(tables)
    if use_rel_pos and len(tables) != num_layers:
        raise ValueError(f"Only blocks {sorted(tables)} of {num_layers} have relative tables: not a ViTDet checkpoint.")
    if use_rel_pos:
        head_dim = int(next(iter(tables.values()))[0][1])
        num_heads = hidden_dim // head_dim
    elif "num_attention_heads" in hf:
        num_heads = int(hf["num_attention_heads"])
    elif hidden_dim in _HEADS_BY_WIDTH:
        num_heads = _HEADS_BY_WIDTH[hidden_dim]
    else:
        raise ValueError(
            f"Cannot tell the head count of a {hidden_dim}-wide ViT without relative tables; keras_vit knows "
            f"the widths {sorted(_HEADS_BY_WIDTH)}. Give the file's config.json beside it."
        )
    if "window_block_indices" in hf:
        windowed = set(hf["window_block_indices"])
        global_blocks = tuple(i for i in range(num_layers) if i not in windowed)
        window_size = int(hf.get("window_size", _PAPER_WINDOW))
    elif use_rel_pos:
        shortest = min(shape[0][0] for shape in tables.values())
        global_blocks = tuple(i for i, (h, w) in sorted(tables.items()) if (h[0], w[0]) != (shortest, shortest))
        window_size = (shortest + 1) // 2
    else:
        from keras_vit.backbones.vitdet_backbone import default_global_blocks

        global_blocks, window_size = default_global_blocks(num_layers), _PAPER_WINDOW
    if use_rel_pos and global_blocks:
        (h, _), (w, _) = tables[global_blocks[0]]
        rel_pos_grid = ((h + 1) // 2, (w + 1) // 2)
    else:
        size = hf.get("image_size", _PAPER_IMAGE_SIZE)
        size = size if isinstance(size, (list, tuple)) else (size, size)
        rel_pos_grid = (int(size[0]) // patch_size, int(size[1]) // patch_size)
    image_size = hf.get("image_size")
    if image_size is None:
        image_shape = (rel_pos_grid[0] * patch_size, rel_pos_grid[1] * patch_size, channels)
    else:
        image_size = image_size if isinstance(image_size, (list, tuple)) else (image_size, image_size)
        image_shape = (int(image_size[0]), int(image_size[1]), channels)
    pyramid_dim = 256
    if layout == "detectron2" and "backbone.simfp_4.0.weight" in arrays:
        pyramid_dim = int(to_numpy(arrays["backbone.simfp_4.0.weight"]).shape[0])
    return {
        "image_shape": image_shape,
        "patch_size": patch_size,
        "hidden_dim": hidden_dim,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "mlp_ratio": get("blocks.0.mlp.fc1.weight").shape[0] / hidden_dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in names,
        "window_size": window_size,
        "global_attention_blocks": global_blocks,
        "use_rel_pos": use_rel_pos or layout == "timm",
        "rel_pos_grid": rel_pos_grid,
        "pretrain_image_size": grid * patch_size,
        "residual_blocks": tuple(i for i in range(num_layers) if f"blocks.{i}.residual.conv1.weight" in names),
        "pyramid_dim": pyramid_dim,
        "layer_norm_epsilon": float(hf.get("layer_norm_eps", 1e-6)),
    }


def _conv_transpose(layer, arrays, key):
    """torch ConvTranspose2d `(I, O, 2, 2)` -> `ConvTranspose2x2` `(2, 2, O, I)`."""
    assign(layer.kernel, to_numpy(arrays[f"{key}.weight"]).transpose(2, 3, 1, 0), f"{key}.weight")
    assign(layer.bias, arrays[f"{key}.bias"], f"{key}.bias")


def _pyramid(backbone, arrays):
    """detectron2's `simfp_*` stages (see the module doc for the indices)."""
    convs = {2: (4, 5), 3: (1, 2), 4: (0, 1), 5: (1, 2)}
    for stage, (lateral, output) in convs.items():
        level = backbone.get_layer(f"simfp_{stage}")
        prefix = f"backbone.simfp_{stage}"
        if stage == 2:
            _conv_transpose(level.upsample_1, arrays, f"{prefix}.0")
            layer_norm(level.upsample_norm, arrays, f"{prefix}.1")
            _conv_transpose(level.upsample_2, arrays, f"{prefix}.3")
        elif stage == 3:
            _conv_transpose(level.upsample_1, arrays, f"{prefix}.0")
        conv2d(level.lateral, arrays, f"{prefix}.{lateral}")
        layer_norm(level.lateral_norm, arrays, f"{prefix}.{lateral}.norm")
        conv2d(level.output_conv, arrays, f"{prefix}.{output}")
        layer_norm(level.output_norm, arrays, f"{prefix}.{output}.norm")


class _Renamed:
    """`arrays` read under the plain-ViT names, recording the source keys used."""

    def __init__(self, arrays, names):
        self.arrays, self.names = arrays, names

    def __getitem__(self, name):
        if name not in self.names:
            raise KeyError(f"The checkpoint has no tensor for {name!r}.")
        return self.arrays[self.names[name]]

    def __contains__(self, name):
        return name in self.names


def resample_patch_kernel(kernel, patch_size):
    """A torch patch-embedding kernel `(D, C, p, p)` bicubically resized to
    `patch_size` (as for ViTDet-H, whose MAE weights have 14 x 14 patches
    and whose detector 16 x 16: the paper interpolates the kernel)."""
    from keras_vit.ops.interpolation import interpolation_matrix

    kernel = to_numpy(kernel).astype("float64")
    if kernel.shape[2:] == (patch_size, patch_size):
        return kernel
    rows = interpolation_matrix(kernel.shape[2], patch_size, "bicubic")
    cols = interpolation_matrix(kernel.shape[3], patch_size, "bicubic")
    return np.einsum("yi,dcij,xj->dcyx", rows, kernel, cols).astype("float32")


def resample_positions(pos_embed, grid):
    """A `(1, 1 + g^2, D)` position table resized (bicubic) to a `grid` x
    `grid` table, the class row kept."""
    from keras_vit.ops.interpolation import resize_grid

    table = to_numpy(pos_embed).reshape(-1, to_numpy(pos_embed).shape[-1])
    side = int(round((table.shape[0] - 1) ** 0.5))
    if side == grid:
        return table[None]
    resized = resize_grid(table[1:].reshape(side, side, -1), (grid, grid), "bicubic").reshape(grid * grid, -1)
    return np.concatenate([table[:1], resized], axis=0)[None].astype("float32")


def load_vitdet_state_dict(model, arrays):
    """Copies a ViTDet checkpoint (detectron2, transformers or timm MAE
    layout) into a `ViTDetBackbone` built with its sizes
    (`vitdet_config_from_state_dict`); a tensor with no place raises. A
    file without the pyramid leaves it as initialised, with a warning."""
    layout = detect_vitdet_layout(arrays)
    if layout is None:
        raise ValueError("Not a ViTDet checkpoint: no ViT patch embedding in a layout keras_vit converts.")
    tracked = TrackedDict(arrays)
    names = _plain(tracked, layout)
    plain = _Renamed(tracked, names)
    conv2d(model.get_layer("patch_embedding"), plain, "patch_embed.proj")
    position = model.get_layer("position_embedding")
    assign(position.position_embedding, to_numpy(plain["pos_embed"]).reshape(position.position_embedding.shape), "pos_embed")
    blocks = model.blocks()
    if _block_count(names) != len(blocks):
        raise ValueError(f"The checkpoint has {_block_count(names)} blocks, the model {len(blocks)}: build it with the checkpoint's depth.")
    for index, block in enumerate(blocks):
        prefix = f"blocks.{index}"
        layer_norm(block.norm1, plain, f"{prefix}.norm1")
        layer_norm(block.norm2, plain, f"{prefix}.norm2")
        linear(block.attention.qkv, plain, f"{prefix}.attn.qkv")
        linear(block.attention.proj, plain, f"{prefix}.attn.proj")
        linear(block.fc1, plain, f"{prefix}.mlp.fc1")
        linear(block.fc2, plain, f"{prefix}.mlp.fc2")
        if block.use_rel_pos and f"{prefix}.attn.rel_pos_h" in plain:
            for name in ("rel_pos_h", "rel_pos_w"):
                assign(getattr(block.attention, name), plain[f"{prefix}.attn.{name}"], f"{prefix}.attn.{name}")
        if block.residual is not None:
            residual = block.residual
            for i in (1, 2, 3):
                conv2d(getattr(residual, f"conv{i}"), plain, f"{prefix}.residual.conv{i}")
                layer_norm(getattr(residual, f"norm{i}"), plain, f"{prefix}.residual.norm{i}")
    has_pyramid = layout == "detectron2" and any(k.startswith("backbone.simfp_") for k in arrays)
    if has_pyramid:
        _pyramid(model, tracked)
    else:
        warnings.warn(
            f"This {layout} checkpoint has the plain ViT only: the simple feature pyramid (P2...P6) keeps its "
            "fresh initialisation; train it (e.g. keras-vit detect --backbone) before using its outputs.",
            stacklevel=2,
        )
    # Not part of the backbone: detectron2's detector heads, MAE's class
    # token and final norm (ViTDet drops both).
    ignore = {"detectron2": ("proposal_generator.", "roi_heads.", "pixel_"), "timm": ("cls_token", "norm.", "fc_norm.")}
    check_all_used(tracked, tracked.used, f"ViTDet ({layout})", ignore=ignore.get(layout, ()))
    return model
