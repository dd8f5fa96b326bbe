"""A tiny random transformers DETR and the matching keras_vit DETR (no downloads)."""

import numpy as np

from keras_vit.conversion.detr import detr_config_from_checkpoint
from keras_vit.conversion.detr import load_detr_state_dict
from keras_vit.layers.image_preprocessor import IMAGENET_MEAN
from keras_vit.layers.image_preprocessor import IMAGENET_STD
from keras_vit.presets.detr_presets import build_detr
from reference_models import randomize

NUM_CLASSES, NUM_QUERIES, DECODER_LAYERS = 5, 10, 3


def tiny_config(**overrides):
    """REFERENCE.md 2.6's tiny config: transformers' own ResNet, d_model 64."""
    import transformers

    values = dict(
        use_timm_backbone=False,
        backbone_config=transformers.ResNetConfig(
            depths=[1, 1, 1, 1], hidden_sizes=[32, 64, 128, 256], embedding_size=16, out_features=["stage4"]
        ),
        use_pretrained_backbone=False,
        d_model=64, encoder_layers=2, decoder_layers=DECODER_LAYERS, encoder_ffn_dim=128, decoder_ffn_dim=128,
        encoder_attention_heads=4, decoder_attention_heads=4,
        num_queries=NUM_QUERIES, num_labels=NUM_CLASSES, dropout=0.0,
        # transformers feeds each LayerNorm-ed intermediate output into the next
        # decoder layer when auxiliary_loss=True, which the original DETR does
        # not; its released configs say False, and so do we for the forward.
        auxiliary_loss=False,
    )
    values.update(overrides)
    config = transformers.DetrConfig(**values)
    config._attn_implementation = "eager"
    return config


def randomize_batch_norms(model, seed=1):
    """Random frozen-BatchNorm statistics and affine terms (buffers, not parameters)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
            elif name.endswith("weight"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.2 + 1.0)
    return model


def reference_detr(config=None, seed=0, randomize_weights=True):
    """With `randomize_weights=False` the model keeps its own initialisation
    (N(0, 0.02) linears, Kaiming convs), which a 50-layer network needs to
    stay finite; the tiny model's fully random weights catch no-op mistakes."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.DetrForObjectDetection(config or tiny_config())
    if randomize_weights:
        randomize(model, seed=seed)
    return randomize_batch_norms(model, seed=seed + 1).eval()


def state_of(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def keras_detr(state, num_heads=4, dtype=None, **kwargs):
    config = detr_config_from_checkpoint(state, num_heads=num_heads)
    model = build_detr(config, dropout_rate=0.0, dtype=dtype, **kwargs)
    return load_detr_state_dict(model, state)


def padded_batch(seed=0, shape=(2, 96, 128)):
    """Images in [0, 255] and a pixel mask; image 1 is a smaller image padded bottom/right."""
    rng = np.random.default_rng(seed)
    batch, height, width = shape
    images = rng.uniform(0, 255, size=(batch, height, width, 3)).astype("float32")
    mask = np.ones((batch, height, width), bool)
    mask[1, 70:] = False
    mask[1, :, 100:] = False
    images[~mask] = 0.0
    return images, mask


def pixel_values(images, mask):
    """transformers' input: normalised, padding zeroed, channels first."""
    import torch

    x = (images / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD) * mask[..., None]
    return torch.from_numpy(x.astype("float32").transpose(0, 3, 1, 2).copy())


def original_state(hf_state):
    """A transformers 5.x DETR state dict under the original release's names
    (facebookresearch/detr `main.py` checkpoints: fused attention in_proj,
    torchvision backbone names under `backbone.0.body.`)."""
    import re

    out, pending = {}, {}
    for key, value in hf_state.items():
        if key.startswith("model.backbone."):
            name = key.split(".", 3)[3]  # below model.backbone.model.
            name = name.replace("embedder.embedder.convolution", "conv1").replace("embedder.embedder.normalization", "bn1")
            match = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)", name)
            if match:
                stage, block, rest = int(match[1]) + 1, match[2], match[3]
                rest = re.sub(r"layer\.(\d)\.convolution", lambda m: f"conv{int(m[1]) + 1}", rest)
                rest = re.sub(r"layer\.(\d)\.normalization", lambda m: f"bn{int(m[1]) + 1}", rest)
                rest = rest.replace("shortcut.convolution", "downsample.0").replace("shortcut.normalization", "downsample.1")
                name = f"layer{stage}.{block}.{rest}"
            out[f"backbone.0.body.{name}"] = value
            continue
        match = re.match(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.*)", key)
        if match:
            part, index, rest = match[1], match[2], match[3]
            prefix = f"transformer.{part}.layers.{index}"
            attention = re.match(r"(self_attn|encoder_attn)\.([qkvo])_proj\.(weight|bias)", rest)
            if attention:
                module = "self_attn" if attention[1] == "self_attn" else "multihead_attn"
                if attention[2] == "o":
                    out[f"{prefix}.{module}.out_proj.{attention[3]}"] = value
                else:
                    pending.setdefault(f"{prefix}.{module}.in_proj_{attention[3]}", {})[attention[2]] = value
                continue
            final = "norm2" if part == "encoder" else "norm3"
            rest = (
                rest.replace("self_attn_layer_norm", "norm1").replace("encoder_attn_layer_norm", "norm2")
                .replace("final_layer_norm", final).replace("mlp.fc1", "linear1").replace("mlp.fc2", "linear2")
            )
            out[f"{prefix}.{rest}"] = value
            continue
        for theirs, ours in (
            ("model.decoder.layernorm", "transformer.decoder.norm"), ("model.input_projection", "input_proj"),
            ("model.query_position_embeddings", "query_embed"), ("class_labels_classifier", "class_embed"),
            ("bbox_predictor", "bbox_embed"),
        ):
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value
                break
        else:
            raise KeyError(key)
    for key, parts in pending.items():
        out[key] = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
    return out
