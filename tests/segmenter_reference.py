"""Plain numpy Segmenter pieces written from the paper (Strudel et al., 2021,
section 3.2) and the official evaluation procedure, for the tests, and
writers of checkpoints in the official and mmsegmentation layouts. Weights
are dicts in the official checkpoint's names (float64 numpy arrays):

- the mask transformer: `proj_dec`, `cls_emb`, `blocks.{i}.*` (pre-LN
  transformer blocks: `norm1`, `attn.qkv`, `attn.proj`, `norm2`,
  `mlp.fc1`, `mlp.fc2`), `decoder_norm`, `proj_patch`, `proj_classes`,
  `mask_norm`;
- the linear decoder: `head`.

The reference computations use no framework (no torch, no keras); GELU is
the exact (erf) one. The writers use torch (and yaml) to write the files.
"""

import math

import numpy as np

ERF = np.vectorize(math.erf)


def layer_norm(x, weight, bias, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * weight + bias


def linear(x, weights, name):
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def gelu(x):
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)))


def softmax(x, axis=-1):
    x = x - x.max(axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis, keepdims=True)


def block(x, weights, prefix, heads, epsilon):
    """x + attention(LN(x)); x + MLP(LN(x))."""
    batch, tokens, width = x.shape
    y = layer_norm(x, weights[f"{prefix}.norm1.weight"], weights[f"{prefix}.norm1.bias"], epsilon)
    qkv = linear(y, weights, f"{prefix}.attn.qkv").reshape(batch, tokens, 3, heads, width // heads)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    attention = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(width // heads))
    y = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, width)
    x = x + linear(y, weights, f"{prefix}.attn.proj")
    y = layer_norm(x, weights[f"{prefix}.norm2.weight"], weights[f"{prefix}.norm2.bias"], epsilon)
    return x + linear(gelu(linear(y, weights, f"{prefix}.mlp.fc1")), weights, f"{prefix}.mlp.fc2")


def mask_transformer(patches, weights, grid, heads, epsilon=1e-5):
    """`(B, N, D_enc)` patch tokens -> `(B, h, w, K)` masks (paper, 3.2)."""
    num_classes = weights["cls_emb"].shape[1]
    x = linear(patches, weights, "proj_dec")
    x = np.concatenate([x, np.broadcast_to(weights["cls_emb"], (len(x),) + weights["cls_emb"].shape[1:])], 1)
    layers = len({k.split(".")[1] for k in weights if k.startswith("blocks.")})
    for i in range(layers):
        x = block(x, weights, f"blocks.{i}", heads, epsilon)
    x = layer_norm(x, weights["decoder_norm.weight"], weights["decoder_norm.bias"], epsilon)
    p = x[:, :-num_classes] @ weights["proj_patch"]
    c = x[:, -num_classes:] @ weights["proj_classes"]
    p = p / np.linalg.norm(p, axis=-1, keepdims=True)
    c = c / np.linalg.norm(c, axis=-1, keepdims=True)
    masks = layer_norm(p @ c.transpose(0, 2, 1), weights["mask_norm.weight"], weights["mask_norm.bias"], epsilon)
    return masks.reshape(len(x), grid[0], grid[1], num_classes)


def linear_decoder(patches, weights, grid):
    logits = linear(patches, weights, "head")
    return logits.reshape(len(logits), grid[0], grid[1], -1)


def random_encoder_weights(rng, width, layers, mlp, patch, grid, scale=0.2):
    """Random ViT encoder weights in timm's (and the official encoder's)
    names, with the official encoder's unused 1000-class head."""
    weights = {
        "patch_embed.proj.weight": rng.normal(0, scale, (width, 3, patch, patch)),
        "patch_embed.proj.bias": rng.normal(0, scale, width), "cls_token": rng.normal(0, scale, (1, 1, width)),
        "pos_embed": rng.normal(0, scale, (1, grid * grid + 1, width)),
        "norm.weight": rng.uniform(0.5, 1.5, width), "norm.bias": rng.normal(0, 0.1, width),
        "head.weight": rng.normal(0, scale, (1000, width)), "head.bias": rng.normal(0, scale, 1000),
    }
    blocks = random_decoder_weights(rng, width, 1, layers=layers, mlp=mlp, scale=scale)
    weights.update({k: v for k, v in blocks.items() if k.startswith("blocks.")})
    return weights


def random_decoder_weights(rng, width, num_classes, layers, mlp, scale=0.3):
    """Random mask-transformer weights in the official names."""
    weights = {
        "proj_dec.weight": rng.normal(0, scale, (width, width)), "proj_dec.bias": rng.normal(0, scale, width),
        "cls_emb": rng.normal(0, 1, (1, num_classes, width)),
        "decoder_norm.weight": rng.uniform(0.5, 1.5, width), "decoder_norm.bias": rng.normal(0, 0.1, width),
        "proj_patch": rng.normal(0, scale, (width, width)), "proj_classes": rng.normal(0, scale, (width, width)),
        "mask_norm.weight": rng.uniform(0.5, 1.5, num_classes), "mask_norm.bias": rng.normal(0, 0.1, num_classes),
    }
    for i in range(layers):
        p = f"blocks.{i}"
        weights.update({
            f"{p}.norm1.weight": rng.uniform(0.5, 1.5, width), f"{p}.norm1.bias": rng.normal(0, 0.1, width),
            f"{p}.attn.qkv.weight": rng.normal(0, scale, (3 * width, width)),
            f"{p}.attn.qkv.bias": rng.normal(0, scale, 3 * width),
            f"{p}.attn.proj.weight": rng.normal(0, scale, (width, width)),
            f"{p}.attn.proj.bias": rng.normal(0, scale, width),
            f"{p}.norm2.weight": rng.uniform(0.5, 1.5, width), f"{p}.norm2.bias": rng.normal(0, 0.1, width),
            f"{p}.mlp.fc1.weight": rng.normal(0, scale, (mlp, width)), f"{p}.mlp.fc1.bias": rng.normal(0, scale, mlp),
            f"{p}.mlp.fc2.weight": rng.normal(0, scale, (width, mlp)), f"{p}.mlp.fc2.bias": rng.normal(0, scale, width),
        })
    return weights


def official_sliding_window(predict, image, window, stride, num_classes):
    """The official `sliding_window` + `merge_windows` (before the final
    resize) on an `(H, W, C)` image: `predict(crop)` gives `(window, window, K)`."""
    height, width = image.shape[:2]
    h_anchors = [h for h in range(0, height, stride) if h < height - window] + [height - window]
    w_anchors = [w for w in range(0, width, stride) if w < width - window] + [width - window]
    logit = np.zeros((height, width, num_classes))
    count = np.zeros((height, width, 1))
    for ha in h_anchors:
        for wa in w_anchors:
            logit[ha:ha + window, wa:wa + window] += predict(image[ha:ha + window, wa:wa + window])
            count[ha:ha + window, wa:wa + window] += 1
    return logit / count


def write_official_checkpoint(directory, encoder, decoder, heads):
    """`directory/checkpoint.pth` (`{"model": state_dict, ...}`) and
    `variant.yml` as the official training writes them, from encoder
    weights in timm's names and decoder weights in the official names."""
    import os

    import torch
    import yaml

    state = {f"encoder.{k}": v for k, v in encoder.items()}
    state.update({f"decoder.{k}": v for k, v in decoder.items()})
    state = {k: torch.from_numpy(np.asarray(v, "float32")) for k, v in state.items()}
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "checkpoint.pth")
    torch.save({"model": state, "epoch": 63, "n_cls": int(decoder["cls_emb"].shape[1])}, path)
    width = int(encoder["pos_embed"].shape[-1])
    layers = len({k.split(".")[1] for k in encoder if k.startswith("blocks.")})
    patch = int(encoder["patch_embed.proj.weight"].shape[-1])
    variant = {"net_kwargs": {"n_heads": heads, "d_model": width, "n_layers": layers, "patch_size": patch,
                              "normalization": "vit", "decoder": {"name": "mask_transformer", "n_layers": 2}}}
    with open(os.path.join(directory, "variant.yml"), "w") as f:
        yaml.safe_dump(variant, f)
    return path


def write_mmseg_checkpoint(path, encoder, decoder):
    """The same weights in mmsegmentation's names and layout
    (`{"state_dict": ..., "meta": ...}`)."""
    import torch

    state = {}
    for key, value in encoder.items():
        if key.startswith("head."):
            continue  # mmsegmentation's backbone has no classifier
        key = key.replace("patch_embed.proj.", "patch_embed.projection.").replace("blocks.", "layers.")
        key = key.replace("norm1.", "ln1.").replace("norm2.", "ln2.").replace("attn.qkv.weight", "attn.attn.in_proj_weight")
        key = key.replace("attn.qkv.bias", "attn.attn.in_proj_bias").replace("attn.proj.", "attn.attn.out_proj.")
        key = key.replace("mlp.fc1.", "ffn.layers.0.0.").replace("mlp.fc2.", "ffn.layers.1.")
        key = "ln1." + key[len("norm."):] if key.startswith("norm.") else key
        state[f"backbone.{key}"] = value
    for key, value in decoder.items():
        if key in ("proj_patch", "proj_classes"):
            key, value = ("patch_proj.weight" if key == "proj_patch" else "classes_proj.weight"), value.T
        key = key.replace("proj_dec.", "dec_proj.").replace("blocks.", "layers.").replace("norm1.", "ln1.")
        key = key.replace("norm2.", "ln2.").replace("attn.qkv.weight", "attn.attn.in_proj_weight")
        key = key.replace("attn.qkv.bias", "attn.attn.in_proj_bias").replace("attn.proj.", "attn.attn.out_proj.")
        key = key.replace("mlp.fc1.", "ffn.layers.0.0.").replace("mlp.fc2.", "ffn.layers.1.")
        state[f"decode_head.{key}"] = value
    state = {k: torch.from_numpy(np.ascontiguousarray(v, "float32")) for k, v in state.items()}
    torch.save({"state_dict": state, "meta": {"iter": 160000}}, path)
    return path
