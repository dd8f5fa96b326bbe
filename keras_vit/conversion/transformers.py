"""Hugging Face transformers ViT checkpoints -> keras_vit `ViT`.

Two name schemes are read (REFERENCE.md section 1.7):

- legacy (transformers 4.x and every hub checkpoint):
  `encoder.layer.{i}.attention.attention.{query,key,value}`,
  `attention.output.dense`, `intermediate.dense`, `output.dense`;
- transformers 5.x in-memory names: `layers.{i}.attention.{q,k,v,o}_proj`,
  `mlp.fc1`, `mlp.fc2`.

Both `ViTModel` (no `vit.` prefix, optional `pooler.dense`) and
`ViTForImageClassification` (`vit.` prefix, `classifier`) state dicts load.
HF's pooler (Dense + tanh on the class token) is keras_vit's pre-logits layer
(`representation_size=hidden_size`).
"""

import numpy as np

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import conv2d
from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy

_LEGACY = {
    "blocks": "encoder.layer",
    "query": "attention.attention.query",
    "key": "attention.attention.key",
    "value": "attention.attention.value",
    "out": "attention.output.dense",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
}
_V5 = {
    "blocks": "layers",
    "query": "attention.q_proj",
    "key": "attention.k_proj",
    "value": "attention.v_proj",
    "out": "attention.o_proj",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}


def _prefix(state_dict):
    return "vit." if "vit.embeddings.cls_token" in state_dict else ""


def _names(state_dict, prefix):
    if any(k.startswith(f"{prefix}{_V5['blocks']}.") for k in state_dict):
        return _V5
    return _LEGACY


def vit_config_from_transformers(config):
    """keras_vit arguments from a transformers `ViTConfig` (object or dict)."""
    if not isinstance(config, dict):
        config = config.to_dict()
    if config.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(
            "Only GELU ViTs convert. Received: hidden_act="
            f"{config.get('hidden_act')!r}"
        )
    image_size = config.get("image_size", 224)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    labels = config.get("id2label") or {}
    backbone = {
        "image_shape": (image_size[0], image_size[1], config.get("num_channels", 3)),
        "patch_size": config.get("patch_size", 16),
        "hidden_dim": config["hidden_size"],
        "num_layers": config["num_hidden_layers"],
        "num_heads": config["num_attention_heads"],
        "mlp_dim": config["intermediate_size"],
        "layer_norm_epsilon": config.get("layer_norm_eps", 1e-12),
        "gelu_approximate": config.get("hidden_act") != "gelu",
        "qkv_bias": config.get("qkv_bias", True),
    }
    return {"backbone": backbone, "classifier": {"num_classes": len(labels)}}


def load_transformers_state_dict(model, state_dict):
    """Copies a transformers ViT state dict into a `keras_vit.ViT` of the same sizes.

    The `(out, in)` query/key/value matrices are concatenated into keras_vit's
    fused `(D, 3D)` kernel.
    """
    state_dict = TrackedDict(state_dict)
    prefix = _prefix(state_dict)
    load_transformers_backbone(model.backbone, state_dict, prefix)
    if model.representation_size is not None:
        linear(model.get_layer("pre_logits"), state_dict, "pooler.dense")
    if model.num_classes:
        linear(model.get_layer("head"), state_dict, "classifier")
    ignore = () if model.representation_size is not None else ("pooler.",)
    check_all_used(state_dict, state_dict.used, "transformers", ignore=ignore)
    return model


def load_transformers_backbone(backbone, state_dict, prefix, position_embedding=None):
    """The encoder of a transformers ViT-layout state dict (`{prefix}embeddings`,
    `{prefix}encoder.layer.{i}` or `{prefix}layers.{i}`, `{prefix}layernorm`)
    into a `ViTBackbone`. `position_embedding`, when given, replaces the
    checkpoint's table (e.g. resized to another grid by the caller)."""
    names = _names(state_dict, prefix)
    emb = f"{prefix}embeddings"
    if backbone.hybrid_layers is None:
        conv2d(
            backbone.get_layer("patch_embedding").projection,
            state_dict,
            f"{emb}.patch_embeddings.projection",
        )
    assign(backbone.get_layer("class_token").token, state_dict[f"{emb}.cls_token"], f"{emb}.cls_token")
    table = state_dict[f"{emb}.position_embeddings"]
    assign(
        backbone.get_layer("position_embedding").embedding,
        table if position_embedding is None else position_embedding,
        f"{emb}.position_embeddings",
    )
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"block_{i}")
        layer = f"{prefix}{names['blocks']}.{i}"
        layer_norm(block.norm1, state_dict, f"{layer}.layernorm_before")
        qkv = [f"{layer}.{names[n]}" for n in ("query", "key", "value")]
        kernel = np.concatenate([to_numpy(state_dict[f"{k}.weight"]) for k in qkv], axis=0)
        assign(block.attention.qkv.kernel, kernel.T, f"{qkv[0]}.weight (+ key, value)")
        if block.attention.qkv.bias is not None:
            bias = np.concatenate([to_numpy(state_dict[f"{k}.bias"]) for k in qkv])
            assign(block.attention.qkv.bias, bias, f"{qkv[0]}.bias (+ key, value)")
        linear(block.attention.proj, state_dict, f"{layer}.{names['out']}")
        layer_norm(block.norm2, state_dict, f"{layer}.layernorm_after")
        linear(block.fc1, state_dict, f"{layer}.{names['fc1']}")
        linear(block.fc2, state_dict, f"{layer}.{names['fc2']}")
    layer_norm(backbone.get_layer("encoder_norm"), state_dict, f"{prefix}layernorm")
