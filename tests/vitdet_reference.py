"""ViTDet's simple feature pyramid in plain torch, written from the paper
(Li et al., ECCV 2022, section 3 and figure 2) and the description in
issue 27, with the module layout of detectron2's `SimpleFeaturePyramid`
(not on the package index) so that its `state_dict` has the keys of a
detectron2 checkpoint's `backbone.simfp_*` tensors:

- scale 4: ConvTranspose 2x2 (D -> D/2) -> LayerNorm -> GELU -> ConvTranspose 2x2 (D/2 -> D/4)
- scale 2: ConvTranspose 2x2 (D -> D/2)
- scale 1: identity
- scale 1/2: max-pool 2x2
- then Conv 1x1 and Conv 3x3 (padding 1) to `out` channels, no bias, each followed by a channel LayerNorm;
- p6: p5 subsampled by 2 (max-pool with kernel 1, stride 2).

Also `detectron2_state`: a transformers `VitDetBackbone` state dict renamed
to detectron2's `backbone.net.*` keys.
"""

import re

import torch
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW map (detectron2's `LayerNorm`, eps 1e-6)."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by its `norm` (detectron2's `Conv2d(norm=...)`)."""

    def __init__(self, cin, cout, kernel):
        super().__init__(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.norm = ChannelLayerNorm(cout)

    def forward(self, x):
        return self.norm(super().forward(x))


class SimpleFeaturePyramid(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.simfp_2 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, 2, 2), ChannelLayerNorm(dim // 2), nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2), ConvNorm(dim // 4, out, 1), ConvNorm(out, out, 3),
        )
        self.simfp_3 = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2), ConvNorm(dim // 2, out, 1), ConvNorm(out, out, 3))
        self.simfp_4 = nn.Sequential(ConvNorm(dim, out, 1), ConvNorm(out, out, 3))
        self.simfp_5 = nn.Sequential(nn.MaxPool2d(2, 2), ConvNorm(dim, out, 1), ConvNorm(out, out, 3))

    def forward(self, x):
        levels = {f"P{i}": getattr(self, f"simfp_{i}")(x) for i in (2, 3, 4, 5)}
        levels["P6"] = nn.functional.max_pool2d(levels["P5"], kernel_size=1, stride=2)
        return levels


def detectron2_state(hf_state, pyramid, extra=True):
    """detectron2's checkpoint layout: `backbone.net.*` (the plain ViT,
    renamed from transformers' `VitDetBackbone`), `backbone.simfp_*`, and
    (with `extra`) a few detector-head tensors that are not the backbone's."""
    state = {}
    for key, value in hf_state.items():
        name = key.replace("embeddings.position_embeddings", "pos_embed").replace("embeddings.projection", "patch_embed.proj")
        name = re.sub(r"^encoder\.layer\.", "blocks.", name).replace(".attention.", ".attn.")
        state[f"backbone.net.{name}"] = value
    for key, value in pyramid.state_dict().items():
        state[f"backbone.{key}"] = value.detach().numpy()
    if extra:
        import numpy as np

        state["roi_heads.box_predictor.cls_score.weight"] = np.zeros((81, 8), "float32")
        state["proposal_generator.rpn_head.conv.weight"] = np.zeros((4, 4, 3, 3), "float32")
    return state
