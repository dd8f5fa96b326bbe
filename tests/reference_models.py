"""Builds reference torch models (timm, transformers) with random weights, no downloads."""

import keras
import numpy as np

from keras_vit import ViT
from keras_vit import ViTBackbone


def randomize(torch_model, seed=0, std=0.2):
    """Replaces every parameter with random values so that no weight is a no-op
    (LayerNorm gammas of one, zero biases and LayerScale 1e-5 would hide bugs)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in torch_model.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * std
            if name.endswith("norm1.weight") or "layernorm" in name or name.endswith("norm.weight"):
                noise = noise + 1.0
            param.copy_(noise)
    return torch_model.eval()


def images(shape, seed=0):
    """(B, H, W, C) float32 images and the same batch as a (B, C, H, W) torch tensor."""
    import torch

    x = np.random.default_rng(seed).normal(size=shape).astype("float32")
    return x, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def keras_model(config, dtype=None):
    """A ViT from a converter's `{"backbone": ..., "classifier": ...}` arguments."""
    backbone = ViTBackbone(**config["backbone"], dtype=dtype)
    return ViT(backbone, dtype=dtype, **config["classifier"])


def to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return keras.ops.convert_to_numpy(x)


def max_abs_diff(a, b):
    return float(np.max(np.abs(to_numpy(a).astype("float64") - to_numpy(b).astype("float64"))))


def randomize_module(module, seed=0, std=0.3):
    """Random parameters *and* BatchNorm statistics (running variance in
    [0.5, 1.5)) for a torch module; LayerNorm gammas around one."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif "layernorm" in name and name.endswith("weight"):
                tensor.copy_(1.0 + torch.randn(tensor.shape, generator=generator) * std)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)
    return module.eval()


def dpt_config(**kwargs):
    """A transformers `DPTConfig` of odd tiny sizes (7x7 grid of 4-pixel
    patches, 4 blocks all tapped); keyword arguments override."""
    import transformers

    args = dict(
        hidden_size=12, num_hidden_layers=4, num_attention_heads=3, intermediate_size=15, image_size=28,
        patch_size=4, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[6, 8, 10, 12],
        reassemble_factors=[4, 2, 1, 0.5], fusion_hidden_size=10, num_labels=5, layer_norm_eps=1e-12,
        readout_type="project",
    )
    args.update(kwargs)
    return transformers.DPTConfig(**args)


def assert_segmenter_equal(model, reference, x, x_torch, tolerance=1e-4):
    """A keras_vit DPTImageSegmenter's logits and auxiliary logits equal a
    transformers DPTForSemanticSegmentation's (its auxiliary head hooked)."""
    import torch

    captured = {}
    hook = reference.auxiliary_head.register_forward_hook(lambda m, i, o: captured.__setitem__("aux", o))
    with torch.no_grad():
        expected = reference(pixel_values=x_torch).logits
    hook.remove()
    got = model(x, training=False)
    assert max_abs_diff(got["logits"], expected.permute(0, 2, 3, 1)) <= tolerance
    assert max_abs_diff(got["aux_logits"], captured["aux"].permute(0, 2, 3, 1)) <= tolerance


def swin_official_layout(state, depths):
    """A timm Swin state dict (numpy) in the official `.pth` layout: merging at the end of
    the previous stage, `head`, and the buffers the official code saves."""
    import torch

    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)
        if key.startswith("head.fc."):
            parts = ["head", parts[-1]]
        out[".".join(parts)] = torch.from_numpy(value)
    for stage, depth in enumerate(depths):
        for block in range(depth):
            out[f"layers.{stage}.blocks.{block}.attn.relative_position_index"] = torch.zeros(9, 9, dtype=torch.long)
            out[f"layers.{stage}.blocks.{block}.attn_mask"] = torch.full((4, 9, 9), -100.0)
    return out


def mvit_official_layout(state, depths):
    """An MViTv2 state dict (numpy) in timm's names back to the official flat `blocks.N` with `proj` and `head.projection`."""
    import torch

    out, index = {}, {}
    n = 0
    for stage, depth in enumerate(depths):
        for block in range(depth):
            index[f"stages.{stage}.blocks.{block}."] = f"blocks.{n}."
            n += 1
    for key, value in state.items():
        for old, new in index.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        key = key.replace("shortcut_proj_attn", "proj").replace("shortcut_proj_mlp", "proj").replace("head.fc", "head.projection")
        out[key] = torch.from_numpy(value)
    return out


def check_release_round_trip(cls, name, source, reference, mirrors, timm_repo, official_file, official_checkpoint):
    """The whole `cls.from_preset(name, source=source)` path on a full-size
    random `reference` (timm): its state written as timm's hub file or as
    `official_checkpoint(state)` at `mirrors/releases/official_file`, then
    downloaded, converted (equal to timm), cached (the second call with a
    new head needs no file) and re-headed."""
    import torch
    from safetensors.numpy import save_file

    state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
    if source == "timm":
        path = mirrors / "hub" / timm_repo / "resolve" / "main" / "model.safetensors"
        path.parent.mkdir(parents=True)
        save_file(state, str(path))
    else:
        path = mirrors / "releases" / official_file
        path.parent.mkdir(parents=True)
        torch.save(official_checkpoint(state), path)
    x, x_torch = images((1, 224, 224, 3))
    with torch.no_grad():
        expected = reference(x_torch)
    model = cls.from_preset(name, source=source)
    assert max_abs_diff(model(x), expected) <= 1e-4
    path.unlink()  # the second call needs no "network"
    again = cls.from_preset(name, source=source, num_classes=5)
    assert again.num_classes == 5
    assert max_abs_diff(again.backbone(x), model.backbone(x)) == 0.0
