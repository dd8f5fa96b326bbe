"""DETR checkpoints -> keras_vit `DETR`: the original `.pth` releases and transformers.

| format | marker key | attention | backbone prefix |
|---|---|---|---|
| original (facebookresearch/detr) | `transformer.encoder.layers.0.self_attn.in_proj_weight` | fused `in_proj` (q; k; v) | `backbone.0.body.` |
| transformers 4.x | `model.encoder.layers.0.self_attn.out_proj.weight` | `{q,k,v}_proj`, `out_proj`; top-level `fc1`/`fc2` | `model.backbone.conv_encoder.model.` |
| transformers 5.x | `model.encoder.layers.0.self_attn.o_proj.weight` | `{q,k,v,o}_proj`; `mlp.fc1`/`mlp.fc2` | `model.backbone.model.` |

The backbone is torchvision-layout (timm) in every release; transformers'
own `ResNetModel` layout (`use_timm_backbone=False`) is recognised too.
"""

import numpy as np

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import conv2d
from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy
from keras_vit.conversion.torchvision_resnet import load_torchvision_resnet

ORIGINAL_MARKER = "transformer.encoder.layers.0.self_attn.in_proj_weight"


def detect_detr_format(arrays):
    """`"original"` or `"transformers"`; raises for anything else."""
    if ORIGINAL_MARKER in arrays:
        return "original"
    if "model.query_position_embeddings.weight" in arrays:
        return "transformers"
    raise ValueError(
        f"Not a DETR checkpoint: neither {ORIGINAL_MARKER!r} (original release) nor "
        f"'model.query_position_embeddings.weight' (transformers) is present. First keys: {sorted(arrays)[:6]}"
    )


def _backbone_prefix(arrays, source_format):
    if source_format == "original":
        return "backbone.0.body.", "torchvision"
    for prefix in ("model.backbone.conv_encoder.model.", "model.backbone.model."):
        if f"{prefix}conv1.weight" in arrays:
            return prefix, "torchvision"
        if f"{prefix}embedder.embedder.convolution.weight" in arrays:
            return prefix, "transformers"
    raise ValueError("The transformers DETR checkpoint has no recognisable ResNet backbone keys.")


def _count(arrays, template):
    n = 0
    while template.format(n) in arrays:
        n += 1
    return n


def detr_config_from_checkpoint(arrays, num_heads=8, dilate_last_stage=False):
    """Constructor arguments (`backbone` and DETR sizes) read off the tensors.

    Head count and dilation are not visible in the weights: pass them
    (the releases use 8 heads; DC5 checkpoints need `dilate_last_stage=True`).
    """
    source_format = detect_detr_format(arrays)
    prefix, layout = _backbone_prefix(arrays, source_format)
    if layout == "torchvision":
        blocks = tuple(_count(arrays, f"{prefix}layer{s}.{{}}.conv1.weight") for s in (1, 2, 3, 4))
        stem = arrays[f"{prefix}conv1.weight"].shape[0]
        stage_filters = tuple(int(arrays[f"{prefix}layer{s}.0.conv3.weight"].shape[0]) for s in (1, 2, 3, 4))
    else:
        blocks = tuple(
            _count(arrays, f"{prefix}encoder.stages.{s}.layers.{{}}.layer.0.convolution.weight") for s in range(4)
        )
        stem = arrays[f"{prefix}embedder.embedder.convolution.weight"].shape[0]
        stage_filters = tuple(
            int(arrays[f"{prefix}encoder.stages.{s}.layers.0.layer.2.convolution.weight"].shape[0]) for s in range(4)
        )
    depth = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101}.get(blocks, blocks)
    if source_format == "original":
        queries = arrays["query_embed.weight"]
        classes = arrays["class_embed.weight"]
        encoder = _count(arrays, "transformer.encoder.layers.{}.linear1.weight")
        decoder = _count(arrays, "transformer.decoder.layers.{}.linear1.weight")
        ffn = arrays["transformer.encoder.layers.0.linear1.weight"].shape[0]
    else:
        queries = arrays["model.query_position_embeddings.weight"]
        classes = arrays["class_labels_classifier.weight"]
        encoder = _count(arrays, "model.encoder.layers.{}.final_layer_norm.weight")
        decoder = _count(arrays, "model.decoder.layers.{}.final_layer_norm.weight")
        fc1 = "model.encoder.layers.0.mlp.fc1.weight"
        ffn = arrays[fc1 if fc1 in arrays else "model.encoder.layers.0.fc1.weight"].shape[0]
    return {
        "backbone": {
            "depth": depth,
            "dilate_last_stage": bool(dilate_last_stage),
            "stem_filters": int(stem),
            "stage_filters": stage_filters,
        },
        "num_classes": int(classes.shape[0]) - 1,
        "num_queries": int(queries.shape[0]),
        "hidden_dim": int(queries.shape[1]),
        "num_heads": int(num_heads),
        "encoder_layers": encoder,
        "decoder_layers": decoder,
        "ffn_dim": int(ffn),
    }


def _fused_attention(layer, arrays, prefix):
    # torch nn.MultiheadAttention: in_proj_weight (3D, D) rows = q; k; v.
    weight = to_numpy(arrays[f"{prefix}.in_proj_weight"])
    bias = to_numpy(arrays[f"{prefix}.in_proj_bias"])
    dim = weight.shape[1]
    for i, dense in enumerate((layer.query_dense, layer.key_dense, layer.value_dense)):
        assign(dense.kernel, weight[i * dim:(i + 1) * dim].T, f"{prefix}.in_proj_weight[{i}]")
        assign(dense.bias, bias[i * dim:(i + 1) * dim], f"{prefix}.in_proj_bias[{i}]")
    linear(layer.output_dense, arrays, f"{prefix}.out_proj")


def _split_attention(layer, arrays, prefix):
    output = "o_proj" if f"{prefix}.o_proj.weight" in arrays else "out_proj"
    for dense, name in (
        (layer.query_dense, "q_proj"), (layer.key_dense, "k_proj"),
        (layer.value_dense, "v_proj"), (layer.output_dense, output),
    ):
        linear(dense, arrays, f"{prefix}.{name}")


def _names(source_format, arrays):
    """Checkpoint names of each part, per format."""
    if source_format == "original":
        return {
            "encoder": "transformer.encoder.layers.{}",
            "decoder": "transformer.decoder.layers.{}",
            "attention": _fused_attention,
            "self_attention": "self_attn", "cross_attention": "multihead_attn",
            "self_attention_norm": "norm1", "cross_attention_norm": "norm2",
            "encoder_final_norm": "norm2", "decoder_final_norm": "norm3",
            "fc1": "linear1", "fc2": "linear2",
            "decoder_norm": "transformer.decoder.norm", "input_projection": "input_proj",
            "queries": "query_embed.weight", "class_head": "class_embed", "box_head": "bbox_embed.layers",
        }
    mlp = "mlp." if "model.encoder.layers.0.mlp.fc1.weight" in arrays else ""
    return {
        "encoder": "model.encoder.layers.{}",
        "decoder": "model.decoder.layers.{}",
        "attention": _split_attention,
        "self_attention": "self_attn", "cross_attention": "encoder_attn",
        "self_attention_norm": "self_attn_layer_norm", "cross_attention_norm": "encoder_attn_layer_norm",
        "encoder_final_norm": "final_layer_norm", "decoder_final_norm": "final_layer_norm",
        "fc1": f"{mlp}fc1", "fc2": f"{mlp}fc2",
        "decoder_norm": "model.decoder.layernorm", "input_projection": "model.input_projection",
        "queries": "model.query_position_embeddings.weight", "class_head": "class_labels_classifier",
        "box_head": "bbox_predictor.layers",
    }


def _load_post_norm_layer(layer, arrays, names, key, final_norm):
    """The sublayers encoder and decoder layers share: self-attention, its norm, the MLP, the final norm."""
    names["attention"](layer.self_attention, arrays, f"{key}.{names['self_attention']}")
    layer_norm(layer.self_attention_norm, arrays, f"{key}.{names['self_attention_norm']}")
    linear(layer.fc1, arrays, f"{key}.{names['fc1']}")
    linear(layer.fc2, arrays, f"{key}.{names['fc2']}")
    layer_norm(layer.final_norm, arrays, f"{key}.{names[final_norm]}")


def load_detr_state_dict(model, arrays, source_format=None):
    """Copies an original or transformers DETR state dict into a built `DETR`.

    Every checkpoint tensor must find its place and match its shape.
    """
    if not model.built:
        raise ValueError("Build the DETR first (call it on a batch) before loading weights.")
    source_format = source_format or detect_detr_format(arrays)
    # BatchNorm step counters (num_batches_tracked) carry no weights.
    arrays = TrackedDict(
        {k: np.asarray(to_numpy(v)) for k, v in arrays.items() if not k.endswith("num_batches_tracked")}
    )
    prefix, layout = _backbone_prefix(arrays, source_format)
    used = load_torchvision_resnet(model.backbone, arrays, prefix, layout=layout)
    names = _names(source_format, arrays)
    for i, layer in enumerate(model.encoder):
        _load_post_norm_layer(layer, arrays, names, names["encoder"].format(i), "encoder_final_norm")
    for i, layer in enumerate(model.decoder):
        key = names["decoder"].format(i)
        _load_post_norm_layer(layer, arrays, names, key, "decoder_final_norm")
        names["attention"](layer.cross_attention, arrays, f"{key}.{names['cross_attention']}")
        layer_norm(layer.cross_attention_norm, arrays, f"{key}.{names['cross_attention_norm']}")
    layer_norm(model.decoder_norm, arrays, names["decoder_norm"])
    conv2d(model.input_projection, arrays, names["input_projection"])
    assign(model.query_embeddings, arrays[names["queries"]], names["queries"])
    linear(model.class_head, arrays, names["class_head"])
    for i, dense in enumerate(model.box_head):
        linear(dense, arrays, f"{names['box_head']}.{i}")
    check_all_used(arrays, arrays.used | used, f"{source_format} DETR")
    return model
