"""The ViT preset table: data only.

Sizes are decoded from one variant table (as big_vision's `decode_variant`);
each preset names its variant, patch, resolution, head, preprocessing and the
public checkpoint its weights are converted from. Parameter counts are checked
against timm and transformers in `tests/presets/test_vit_presets.py`.
"""

# variant: (hidden_dim, num_layers, mlp_dim, num_heads), ViT paper Table 1 and
# the DeiT/AugReg Ti and S sizes.
VARIANTS = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
}

# Preprocessing families (REFERENCE.md section 1.5): pixels in [0, 255] map to
# [-1, 1] for the original ViT / AugReg weights, ImageNet mean/std for DeiT.
PREPROCESSING = {
    "inception": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}


def _preset(
    variant, patch, image_size, source, description, preprocessing="inception",
    source_format="timm", sha256=None, **extra,
):
    hidden_dim, num_layers, mlp_dim, num_heads = VARIANTS[variant]
    backbone = {
        "image_shape": (image_size, image_size, 3),
        "patch_size": patch,
        "hidden_dim": hidden_dim,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
        # timm and transformers checkpoints: LayerNorm eps 1e-6 and exact GELU.
        "layer_norm_epsilon": 1e-6,
        "gelu_approximate": False,
    }
    backbone.update(extra.pop("backbone", {}))
    classifier = {"num_classes": 1000, "pooling": "token", "representation_size": None}
    classifier.update(extra.pop("classifier", {}))
    if extra:
        raise ValueError(f"Unknown preset fields: {sorted(extra)}")
    return {
        "description": description,
        "variant": f"{variant}/{patch}",
        "backbone": backbone,
        "classifier": classifier,
        "preprocessing": {"image_size": image_size, **PREPROCESSING[preprocessing]},
        # A Hugging Face hub repo holding model.safetensors in `source_format`.
        "source": source,
        "format": source_format,
        "sha256": sha256,
    }


VIT_PRESETS = {
    "vit_ti16": _preset(
        "Ti", 16, 224,
        "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        "ViT-Ti/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_s16": _preset(
        "S", 16, 224,
        "timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
        "ViT-S/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_s32": _preset(
        "S", 32, 224,
        "timm/vit_small_patch32_224.augreg_in21k_ft_in1k",
        "ViT-S/32, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_b8": _preset(
        "B", 8, 224,
        "timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
        "ViT-B/8, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg2).",
    ),
    "vit_b16": _preset(
        "B", 16, 224,
        "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "ViT-B/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg2).",
    ),
    "vit_b32": _preset(
        "B", 32, 224,
        "timm/vit_base_patch32_224.augreg_in21k_ft_in1k",
        "ViT-B/32, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_l16": _preset(
        "L", 16, 224,
        "timm/vit_large_patch16_224.augreg_in21k_ft_in1k",
        "ViT-L/16, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 224 (AugReg).",
    ),
    "vit_l32": _preset(
        "L", 32, 384,
        "timm/vit_large_patch32_384.orig_in21k_ft_in1k",
        "ViT-L/32, ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 384 "
        "(original release).",
    ),
    "vit_h14": _preset(
        "H", 14, 224,
        "timm/vit_huge_patch14_224.orig_in21k",
        "ViT-H/14, ImageNet-21k pre-trained (original release); the checkpoint has "
        "no classifier, so the 1000-class head starts untrained.",
    ),
    # DeiT (Touvron et al., 2021): ViT architecture trained on ImageNet-1k only,
    # with ImageNet mean/std preprocessing.
    "deit_ti16": _preset(
        "Ti", 16, 224,
        "timm/deit_tiny_patch16_224.fb_in1k",
        "DeiT-Ti/16, ImageNet-1k from scratch at 224 (72.2% top-1).",
        preprocessing="imagenet",
    ),
    "deit_s16": _preset(
        "S", 16, 224,
        "timm/deit_small_patch16_224.fb_in1k",
        "DeiT-S/16, ImageNet-1k from scratch at 224 (79.9% top-1).",
        preprocessing="imagenet",
    ),
    "deit_b16": _preset(
        "B", 16, 224,
        "timm/deit_base_patch16_224.fb_in1k",
        "DeiT-B/16, ImageNet-1k from scratch at 224 (81.8% top-1).",
        preprocessing="imagenet",
    ),
    # Hybrids (ViT paper section 3.1): patches cut from a BiT ResNet feature map.
    "r50_vit_b16": _preset(
        "B", 1, 384,
        "timm/vit_base_r50_s16_384.orig_in21k_ft_in1k",
        "R50+ViT-B/16 hybrid: ResNet-50 stages (3, 4, 9) to stride 16, then ViT-B; "
        "ImageNet-21k pre-trained, ImageNet-1k fine-tuned at 384 (original release).",
        backbone={"hybrid_layers": (3, 4, 9)},
    ),
    "r26_vit_s32": _preset(
        "S", 1, 224,
        "timm/vit_small_r26_s32_224.augreg_in21k_ft_in1k",
        "R26+ViT-S/32 hybrid: ResNet-26 stages (2, 2, 2, 2) to stride 32, then ViT-S (AugReg).",
        backbone={"hybrid_layers": (2, 2, 2, 2)},
    ),
    "r_vit_ti16": _preset(
        "Ti", 8, 224,
        "timm/vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k",
        "R+ViT-Ti/16 hybrid: the ResNet stem alone (stride 4) and 8x8 patches, a 7x7 "
        "grid at 224 (AugReg).",
        backbone={"hybrid_layers": ()},
    ),
}
