"""timm `VisionTransformer` state dicts -> keras_vit `ViT`.

Names (timm 1.x): `patch_embed.proj`, `cls_token`, `pos_embed`,
`blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`,
`norm` (or `fc_norm` with average pooling), `head`. timm's fused `qkv` rows are
[all q heads; all k heads; all v heads], the layout of keras_vit's `qkv` kernel
once transposed, so no reshuffling is needed.
"""

from keras_vit.conversion.common import TrackedDict
from keras_vit.conversion.common import assign
from keras_vit.conversion.common import check_all_used
from keras_vit.conversion.common import conv2d
from keras_vit.conversion.common import image_size_for
from keras_vit.conversion.common import layer_norm
from keras_vit.conversion.common import linear
from keras_vit.conversion.common import to_numpy


_BACKBONE = "patch_embed.backbone"


def _hybrid_layout(state_dict):
    """(stem prefix, blocks per stage) of a timm hybrid, or (None, None)."""
    if f"{_BACKBONE}.stem.conv.weight" in state_dict:
        counts = {}
        for key in state_dict:
            if key.startswith(f"{_BACKBONE}.stages.") and ".blocks." in key:
                parts = key.split(".")
                stage, block = int(parts[3]), int(parts[5])
                counts[stage] = max(counts.get(stage, 0), block + 1)
        return f"{_BACKBONE}.stem", tuple(counts[s] for s in sorted(counts))
    if f"{_BACKBONE}.conv.weight" in state_dict:  # stem only (R+ViT-Ti/16)
        return _BACKBONE, ()
    return None, None


def vit_config_from_timm(state_dict, num_heads, image_size=None):
    """Backbone and classifier arguments read off a timm state dict.

    The head count is not recoverable from weight shapes, so it is passed in.
    `image_size` defaults to the square grid the position table holds.
    Hybrid (ResNet + ViT) checkpoints are recognised by their `patch_embed.backbone`.
    """
    patch = to_numpy(state_dict["patch_embed.proj.weight"])
    hidden_dim, channels, patch_h, patch_w = patch.shape
    stem, hybrid_layers = _hybrid_layout(state_dict)
    stem_stride = 1
    if stem is not None:
        channels = to_numpy(state_dict[f"{stem}.conv.weight"]).shape[1]
        stem_stride = 4 * 2 ** max(len(hybrid_layers) - 1, 0)
    num_layers = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
    mlp_dim = to_numpy(state_dict["blocks.0.mlp.fc1.weight"]).shape[0]
    use_class_token = "cls_token" in state_dict
    tokens = to_numpy(state_dict["pos_embed"]).shape[1] - int(use_class_token)
    image_size = image_size_for(image_size, tokens, (patch_h * stem_stride, patch_w * stem_stride))
    backbone = {
        "image_shape": (image_size[0], image_size[1], channels),
        "patch_size": (patch_h, patch_w),
        "hidden_dim": hidden_dim,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
        "layer_norm_epsilon": 1e-6,
        "gelu_approximate": False,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "use_class_token": use_class_token,
        "layer_scale_init": 1e-5 if "blocks.0.ls1.gamma" in state_dict else None,
        "hybrid_layers": hybrid_layers,
    }
    head = state_dict.get("head.weight")
    if (head is None) != ("head.bias" not in state_dict):
        present = "head.weight" if head is not None else "head.bias"
        raise KeyError(f"The classifier is half there: the checkpoint has {present!r} but not its partner.")
    classifier = {
        "num_classes": 0 if head is None else to_numpy(head).shape[0],
        "pooling": "token" if use_class_token and "fc_norm.weight" not in state_dict else "gap",
        "representation_size": None,
    }
    return {"backbone": backbone, "classifier": classifier}


def _group_norm(layer, state_dict, prefix):
    assign(layer.gamma, state_dict[f"{prefix}.weight"], f"{prefix}.weight")
    assign(layer.beta, state_dict[f"{prefix}.bias"], f"{prefix}.bias")


def _load_hybrid(backbone, state_dict):
    stem_prefix, layout = _hybrid_layout(state_dict)
    if layout != backbone.hybrid_layers:
        raise ValueError(
            f"The checkpoint's ResNet has blocks per stage {layout}, the model "
            f"{backbone.hybrid_layers}. Build it with hybrid_layers={layout}."
        )
    stem = backbone.get_layer("stem")
    conv2d(stem.conv, state_dict, f"{stem_prefix}.conv")
    _group_norm(stem.norm, state_dict, f"{stem_prefix}.norm")
    for stage, depth in enumerate(layout):
        for index in range(depth):
            block = backbone.get_layer(f"stage_{stage}_block_{index}")
            prefix = f"{_BACKBONE}.stages.{stage}.blocks.{index}"
            for i in (1, 2, 3):
                conv2d(getattr(block, f"conv{i}"), state_dict, f"{prefix}.conv{i}")
                _group_norm(getattr(block, f"norm{i}"), state_dict, f"{prefix}.norm{i}")
            if block.project:
                conv2d(block.downsample_conv, state_dict, f"{prefix}.downsample.conv")
                _group_norm(block.downsample_norm, state_dict, f"{prefix}.downsample.norm")


def load_timm_backbone(backbone, state_dict):
    """A timm ViT's backbone tensors (hybrid ResNet, patch embedding, tokens,
    blocks, final norm) into a `ViTBackbone`; `state_dict` is a `TrackedDict`
    in timm's names (also the original DPT's `pretrained.model.*`, prefix
    removed)."""
    if backbone.hybrid_layers is not None:
        _load_hybrid(backbone, state_dict)
    conv2d(backbone.get_layer("patch_embedding").projection, state_dict, "patch_embed.proj")
    if backbone.use_class_token:
        assign(backbone.get_layer("class_token").token, state_dict["cls_token"], "cls_token")
    assign(
        backbone.get_layer("position_embedding").embedding,
        state_dict["pos_embed"],
        "pos_embed",
    )
    for i in range(backbone.num_layers):
        load_timm_block(backbone.get_layer(f"block_{i}"), state_dict, f"blocks.{i}")
    layer_norm(backbone.get_layer("encoder_norm"), state_dict, "norm")


def load_timm_block(block, state_dict, prefix):
    """One timm ViT block (`{prefix}.norm1`, `.attn.qkv`, `.attn.proj`,
    `.norm2`, `.mlp.fc1`, `.mlp.fc2`, LayerScale `.ls1`/`.ls2`) into a
    `TransformerEncoderBlock`."""
    layer_norm(block.norm1, state_dict, f"{prefix}.norm1")
    linear(block.attention.qkv, state_dict, f"{prefix}.attn.qkv")
    linear(block.attention.proj, state_dict, f"{prefix}.attn.proj")
    layer_norm(block.norm2, state_dict, f"{prefix}.norm2")
    linear(block.fc1, state_dict, f"{prefix}.mlp.fc1")
    linear(block.fc2, state_dict, f"{prefix}.mlp.fc2")
    if block.layer_scale1 is not None:
        assign(block.layer_scale1.gamma, state_dict[f"{prefix}.ls1.gamma"], f"{prefix}.ls1.gamma")
        assign(block.layer_scale2.gamma, state_dict[f"{prefix}.ls2.gamma"], f"{prefix}.ls2.gamma")


def load_timm_state_dict(model, state_dict):
    """Copies a timm ViT state dict into a `keras_vit.ViT` built with the same sizes.

    Average pooling with timm's `fc_norm` (norm after pooling) has no
    keras_vit counterpart yet and is rejected; `fc_norm=False` models load.
    """
    state_dict = TrackedDict(state_dict)
    if "fc_norm.weight" in state_dict:
        raise ValueError(
            "This timm checkpoint normalises after pooling (fc_norm); keras_vit "
            "normalises before pooling, like the original ViT. Export it with "
            "fc_norm=False or global_pool='token'."
        )
    load_timm_backbone(model.backbone, state_dict)
    # A checkpoint without a classifier (timm's in21k releases) leaves the head
    # at its initialisation, to be fine-tuned.
    if model.num_classes and "head.weight" in state_dict:
        linear(model.get_layer("head"), state_dict, "head")
    check_all_used(state_dict, state_dict.used, "timm", ignore=("head.",) if not model.num_classes else ())
    return model
