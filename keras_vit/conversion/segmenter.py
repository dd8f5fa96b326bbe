"""Segmenter checkpoints to keras_vit: the official layout (rstrudel/segmenter)
and mmsegmentation's.

Official (`checkpoint.pth`: `{"model": state_dict, ...}`, `variant.yml`
beside it): `encoder.*` in timm's ViT names (`patch_embed.proj`, `cls_token`,
`pos_embed`, `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
mlp.fc2}`, `norm`, and an unused 1000-class `head`), and
`decoder.{cls_emb, proj_dec, proj_patch, proj_classes, blocks.*,
decoder_norm, mask_norm}` (mask transformer; `proj_patch` / `proj_classes`
are matrices applied as `x @ P`) or `decoder.head.*` (linear).

mmsegmentation (`{"state_dict": ..., "meta": ...}`): `backbone.*`
(`patch_embed.projection`, `layers.{i}.{ln1, attn.attn.in_proj_weight/bias,
attn.attn.out_proj, ln2, ffn.layers.0.0, ffn.layers.1}`, final norm `ln1`)
and `decode_head.{dec_proj, cls_emb, layers.*, decoder_norm, mask_norm,
patch_proj, classes_proj}`, where `patch_proj` / `classes_proj` are
bias-free Linear layers, so they hold the transposes; the linear head is an
FCN `conv_seg` 1x1 convolution. mmsegmentation's configs use LayerNorm
epsilon 1e-6 in the backbone (1e-5 in the decoder), the official code 1e-5
everywhere; both normalise images with mean = std = 127.5.

mmsegmentation's names are first renamed to the official ones (one loader).
"""

import re

import numpy as np

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy
from keras_vit.conversion.timm import load_timm_backbone
from keras_vit.conversion.timm import load_timm_block

_MMSEG_BLOCK = (
    ("ln1.", "norm1."), ("ln2.", "norm2."), ("attn.attn.in_proj_weight", "attn.qkv.weight"),
    ("attn.attn.in_proj_bias", "attn.qkv.bias"), ("attn.attn.out_proj.", "attn.proj."),
    ("ffn.layers.0.0.", "mlp.fc1."), ("ffn.layers.1.", "mlp.fc2."),
)


def segmenter_format(arrays):
    """`"official"`, `"mmseg"` or None, from the tensor names."""
    if "encoder.patch_embed.proj.weight" in arrays and any(k.startswith("decoder.") for k in arrays):
        return "official"
    if "backbone.patch_embed.projection.weight" in arrays and any(k.startswith("decode_head.") for k in arrays):
        return "mmseg"
    return None


def mmseg_to_official(arrays):
    """mmsegmentation's Segmenter tensors under the official names."""
    out = {}
    for key, value in arrays.items():
        new = key
        if key.startswith("backbone."):
            new = "encoder." + key[len("backbone."):]
            new = new.replace("encoder.patch_embed.projection.", "encoder.patch_embed.proj.")
            new = re.sub(r"^encoder\.ln1\.", "encoder.norm.", new)
        elif key.startswith("decode_head."):
            new = "decoder." + key[len("decode_head."):]
            new = new.replace("decoder.dec_proj.", "decoder.proj_dec.")
            new = new.replace("decoder.conv_seg.", "decoder.head.")
            if new in ("decoder.patch_proj.weight", "decoder.classes_proj.weight"):
                # A bias-free Linear computes x @ W^T: the official matrix is W^T.
                new = "decoder.proj_patch" if "patch" in new else "decoder.proj_classes"
                value = to_numpy(value).T
            if new == "decoder.head.weight":  # a 1x1 conv (K, D, 1, 1) -> Linear (K, D)
                value = to_numpy(value).reshape(value.shape[0], -1)
        new = re.sub(r"\.layers\.(\d+)\.", r".blocks.\1.", new, count=1)
        if ".blocks." in new:
            for old, replacement in _MMSEG_BLOCK:
                new = new.replace(old, replacement)
        out[new] = value
    return out


def official_arrays(arrays):
    """The checkpoint's tensors in the official names, and its format."""
    found = segmenter_format(arrays)
    if found is None:
        return None, None
    return (mmseg_to_official(arrays) if found == "mmseg" else dict(arrays)), found


def _count(arrays, prefix):
    indices = {int(m.group(1)) for k in arrays for m in [re.match(rf"{re.escape(prefix)}(\d+)\.", k)] if m}
    return max(indices) + 1 if indices else 0


def segmenter_config(arrays, found, variant=None, num_heads=None):
    """The `Segmenter` config of official-named `arrays` (from a checkpoint
    of format `found`). Head counts are not in the tensors: the official
    code uses width / 64 (ViT-Ti 3, S 6, B 12, L 16); `num_heads` or
    `variant.yml`'s `n_heads` override it."""
    if "encoder.dist_token" in arrays:
        raise ValueError(
            "This Segmenter checkpoint has a DeiT distillation token (a Seg-B† model); keras_vit's ViTBackbone "
            "has one prefix token. Use a ViT-backbone release (seg_tiny_mask ... seg_large_mask)."
        )
    net = (variant or {}).get("net_kwargs", {})
    patch = int(arrays["encoder.patch_embed.proj.weight"].shape[-1])
    hidden = int(arrays["encoder.pos_embed"].shape[-1])
    side = int(round((arrays["encoder.pos_embed"].shape[1] - 1) ** 0.5))
    if side * side != arrays["encoder.pos_embed"].shape[1] - 1:
        raise ValueError(
            f"encoder.pos_embed holds {arrays['encoder.pos_embed'].shape[1] - 1} grid positions, not a square grid."
        )
    heads = num_heads or net.get("n_heads") or max(hidden // 64, 1)
    if hidden % heads:
        raise ValueError(f"num_heads={heads} does not divide the width {hidden}. Pass num_heads=...")
    epsilon = 1e-6 if found == "mmseg" else 1e-5
    backbone = {
        "image_shape": (side * patch, side * patch, 3), "patch_size": (patch, patch), "hidden_dim": hidden,
        "num_layers": _count(arrays, "encoder.blocks."), "num_heads": int(heads),
        "mlp_dim": int(arrays["encoder.blocks.0.mlp.fc1.weight"].shape[0]), "layer_norm_epsilon": epsilon,
        "drop_path_rate": 0.1,  # both codes train the encoder with stochastic depth 0.1
    }
    if "decoder.cls_emb" in arrays:
        num_classes = int(arrays["decoder.cls_emb"].shape[1])
        decoder = {
            "decoder": "mask_transformer", "decoder_layers": _count(arrays, "decoder.blocks."),
            "decoder_heads": None, "decoder_epsilon": 1e-5,
            # official: dropout 0.1, no drop-path; mmsegmentation: the reverse
            "decoder_dropout": 0.0 if found == "mmseg" else 0.1,
            "decoder_drop_path": 0.1 if found == "mmseg" else 0.0,
        }
        width = int(arrays["decoder.proj_dec.weight"].shape[0])
        if width != hidden:
            raise ValueError(f"The decoder's width {width} differs from the encoder's {hidden}; keras_vit ties them.")
    elif "decoder.head.weight" in arrays:
        num_classes = int(arrays["decoder.head.weight"].shape[0])
        decoder = {"decoder": "linear"}
    else:
        raise ValueError("The Segmenter checkpoint has neither a mask transformer nor a linear decoder.")
    return {"backbone": backbone, "num_classes": num_classes, **decoder}


def load_segmenter(model, arrays):
    """Places a Segmenter checkpoint's tensors (either layout) into a
    `keras_vit.Segmenter` built with its config; every tensor is used except
    the encoder's unused classifier."""
    arrays, found = official_arrays(arrays)
    if arrays is None:
        raise ValueError("Not a Segmenter checkpoint (neither the official nor mmsegmentation's names).")
    encoder = TrackedDict({k[len("encoder."):]: v for k, v in arrays.items() if k.startswith("encoder.")})
    load_timm_backbone(model.backbone, encoder)
    check_all_used(encoder, encoder.used, f"Segmenter ({found}) encoder", ignore=("head.",))
    decoder = TrackedDict({k[len("decoder."):]: v for k, v in arrays.items() if k.startswith("decoder.")})
    layer = model.get_layer("decoder")
    if model.decoder == "linear":
        linear(layer.head, decoder, "head")
    else:
        linear(layer.proj_dec, decoder, "proj_dec")
        assign(layer.class_embeddings, decoder["cls_emb"], "cls_emb")
        for i, block in enumerate(layer.blocks):
            load_timm_block(block, decoder, f"blocks.{i}")
        layer_norm(layer.decoder_norm, decoder, "decoder_norm")
        assign(layer.proj_patch, decoder["proj_patch"], "proj_patch")
        assign(layer.proj_classes, decoder["proj_classes"], "proj_classes")
        layer_norm(layer.mask_norm, decoder, "mask_norm")
    check_all_used(decoder, decoder.used, f"Segmenter ({found}) decoder")
    return model


def encoder_head_parameters(arrays):
    """Parameters of the official encoder's unused classifier (counted in the
    paper's and the official code's model sizes, absent from keras_vit's)."""
    return sum(int(np.prod(arrays[k].shape)) for k in ("encoder.head.weight", "encoder.head.bias") if k in arrays)
