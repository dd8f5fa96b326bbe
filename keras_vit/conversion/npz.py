"""Original ViT `.npz` checkpoints (google-research/vision_transformer) -> keras_vit.

Key layout (flax, '/'-separated; REFERENCE.md section 1.7):
`embedding/{kernel,bias}` (HWIO conv), `cls`,
`Transformer/posembed_input/pos_embedding`,
`Transformer/encoderblock_{i}/{LayerNorm_0,MultiHeadDotProductAttention_1,LayerNorm_2,MlpBlock_3}/...`,
`Transformer/encoder_norm`, optional `pre_logits` (ImageNet-21k checkpoints), `head`.
Flax kernels are already `(in, out)` and HWIO, so they copy without transposes;
the attention kernels `(D, H, dh)` / `(H, dh, D)` are flattened into keras_vit's
fused `(D, 3D)` and `(D, D)` kernels.
"""

import numpy as np

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import image_size_for

_BLOCK = "Transformer/encoderblock_{}"
_ATTENTION = "MultiHeadDotProductAttention_1"


def load_npz(path):
    """Reads an `.npz` into a dict of arrays without unpickling anything."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _hybrid_layout(arrays):
    """Blocks per ResNet stage of a hybrid checkpoint, `()` for a stem alone, or None."""
    if "conv_root/kernel" not in arrays:
        return None
    counts = {}
    for key in arrays:
        if key.startswith("block") and "/unit" in key:
            stage, unit = key.split("/")[:2]
            stage = int(stage[len("block"):])
            counts[stage] = max(counts.get(stage, 0), int(unit[len("unit"):]))
    return tuple(counts[s] for s in sorted(counts))


def vit_config_from_npz(arrays, image_size=None):
    """Backbone and classifier arguments read off an original-format checkpoint.

    The original code uses tanh GELU and LayerNorm epsilon 1e-6.
    """
    if "embedding/kernel" not in arrays:
        raise ValueError(
            "Not an original ViT .npz: no 'embedding/kernel'. big_vision checkpoints "
            "(keys under 'params/') are not supported yet."
        )
    patch_h, patch_w, channels, hidden_dim = arrays["embedding/kernel"].shape
    hybrid_layers = _hybrid_layout(arrays)
    stem_stride = 1
    if hybrid_layers is not None:
        channels = arrays["conv_root/kernel"].shape[2]
        stem_stride = 4 * 2 ** max(len(hybrid_layers) - 1, 0)
    num_layers = 1 + max(
        int(k.split("/")[1].split("_")[-1]) for k in arrays if k.startswith("Transformer/encoderblock_")
    )
    heads = arrays[f"{_BLOCK.format(0)}/{_ATTENTION}/query/kernel"].shape[1]
    mlp_dim = arrays[f"{_BLOCK.format(0)}/MlpBlock_3/Dense_0/kernel"].shape[1]
    use_class_token = "cls" in arrays
    tokens = arrays["Transformer/posembed_input/pos_embedding"].shape[1] - int(use_class_token)
    image_size = image_size_for(image_size, tokens, (patch_h * stem_stride, patch_w * stem_stride))
    backbone = {
        "image_shape": (image_size[0], image_size[1], channels),
        "patch_size": (patch_h, patch_w),
        "hidden_dim": hidden_dim,
        "num_layers": num_layers,
        "num_heads": heads,
        "mlp_dim": mlp_dim,
        "layer_norm_epsilon": 1e-6,
        "gelu_approximate": True,
        "use_class_token": use_class_token,
        "hybrid_layers": hybrid_layers,
    }
    classifier = {
        "num_classes": arrays["head/kernel"].shape[1] if "head/kernel" in arrays else 0,
        "pooling": "token" if use_class_token else "gap",
        "representation_size": (
            arrays["pre_logits/kernel"].shape[1] if "pre_logits/kernel" in arrays else None
        ),
    }
    return {"backbone": backbone, "classifier": classifier}


def _dense(layer, arrays, prefix):
    assign(layer.kernel, arrays[f"{prefix}/kernel"], f"{prefix}/kernel")
    assign(layer.bias, arrays[f"{prefix}/bias"], f"{prefix}/bias")


def _norm(layer, arrays, prefix):
    # Old GroupNorm/LayerNorm params may be stored as (1, 1, 1, C).
    assign(layer.gamma, np.reshape(arrays[f"{prefix}/scale"], (-1,)), f"{prefix}/scale")
    assign(layer.beta, np.reshape(arrays[f"{prefix}/bias"], (-1,)), f"{prefix}/bias")


def _load_hybrid(backbone, arrays):
    """The BiT ResNet: `conv_root`, `gn_root`, `block{s}/unit{u}/{conv,gn}{1,2,3}`
    and `conv_proj` / `gn_proj` (1-based stage and unit numbers)."""
    layout = _hybrid_layout(arrays)
    if layout != backbone.hybrid_layers:
        raise ValueError(
            f"The checkpoint's ResNet has blocks per stage {layout}, the model "
            f"{backbone.hybrid_layers}. Build it with hybrid_layers={layout}."
        )
    stem = backbone.get_layer("stem")
    assign(stem.conv.kernel, arrays["conv_root/kernel"], "conv_root/kernel")
    _norm(stem.norm, arrays, "gn_root")
    for stage, depth in enumerate(layout):
        for index in range(depth):
            block = backbone.get_layer(f"stage_{stage}_block_{index}")
            prefix = f"block{stage + 1}/unit{index + 1}"
            for i in (1, 2, 3):
                key = f"{prefix}/conv{i}/kernel"
                assign(getattr(block, f"conv{i}").kernel, arrays[key], key)
                _norm(getattr(block, f"norm{i}"), arrays, f"{prefix}/gn{i}")
            if block.project:
                key = f"{prefix}/conv_proj/kernel"
                assign(block.downsample_conv.kernel, arrays[key], key)
                _norm(block.downsample_norm, arrays, f"{prefix}/gn_proj")


def load_npz_weights(model, arrays):
    """Copies original-format arrays into a `keras_vit.ViT` of the same sizes.

    Hybrid checkpoints load into keras_vit's weight-standardised convolutions
    (epsilon 1e-8 inside the square root, as timm); the original JAX code adds
    1e-5 to the standard deviation instead, a relative difference of about
    1e-5 / std(kernel).
    """
    arrays = TrackedDict(arrays)
    backbone = model.backbone
    if backbone.hybrid_layers is not None:
        _load_hybrid(backbone, arrays)
    projection = backbone.get_layer("patch_embedding").projection
    assign(projection.kernel, arrays["embedding/kernel"], "embedding/kernel")
    assign(projection.bias, arrays["embedding/bias"], "embedding/bias")
    if backbone.use_class_token:
        assign(backbone.get_layer("class_token").token, arrays["cls"], "cls")
    key = "Transformer/posembed_input/pos_embedding"
    assign(backbone.get_layer("position_embedding").embedding, arrays[key], key)
    width = backbone.hidden_dim
    for i in range(backbone.num_layers):
        block, prefix = backbone.get_layer(f"block_{i}"), _BLOCK.format(i)
        _norm(block.norm1, arrays, f"{prefix}/LayerNorm_0")
        attention = f"{prefix}/{_ATTENTION}"
        # (D, H, dh) -> (D, D) for each of q, k, v, then side by side -> (D, 3D)
        kernels = [np.reshape(arrays[f"{attention}/{n}/kernel"], (width, width)) for n in ("query", "key", "value")]
        biases = [np.reshape(arrays[f"{attention}/{n}/bias"], (width,)) for n in ("query", "key", "value")]
        assign(block.attention.qkv.kernel, np.concatenate(kernels, axis=1), f"{attention}/query|key|value/kernel")
        assign(block.attention.qkv.bias, np.concatenate(biases), f"{attention}/query|key|value/bias")
        # (H, dh, D) -> (D, D)
        out = np.reshape(arrays[f"{attention}/out/kernel"], (width, width))
        assign(block.attention.proj.kernel, out, f"{attention}/out/kernel")
        assign(block.attention.proj.bias, arrays[f"{attention}/out/bias"], f"{attention}/out/bias")
        _norm(block.norm2, arrays, f"{prefix}/LayerNorm_2")
        _dense(block.fc1, arrays, f"{prefix}/MlpBlock_3/Dense_0")
        _dense(block.fc2, arrays, f"{prefix}/MlpBlock_3/Dense_1")
    _norm(backbone.get_layer("encoder_norm"), arrays, "Transformer/encoder_norm")
    ignore = []
    if model.representation_size is not None:
        _dense(model.get_layer("pre_logits"), arrays, "pre_logits")
    else:
        ignore.append("pre_logits/")  # dropped when fine-tuning, as the original code does
    if model.num_classes and "head/kernel" in arrays:
        _dense(model.get_layer("head"), arrays, "head")
    else:
        ignore.append("head/")
    check_all_used(arrays, arrays.used, "original ViT .npz", ignore=tuple(ignore))
    return model
