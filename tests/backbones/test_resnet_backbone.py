"""DETR's ResNet backbone equals timm's torchvision-layout ResNet (random weights)."""

import numpy as np
import pytest

from keras_vit.backbones.resnet_backbone import ResNetBackbone
from keras_vit.conversion.torchvision_resnet import load_torchvision_resnet
from reference_models import images
from reference_models import max_abs_diff

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")


def _reference(name, output_stride=32):
    model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", output_stride=output_stride)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1 + 0.1 * torch.randn(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    return model.eval()


def _relative_diff(a, b):
    return max_abs_diff(a, b) / float(np.abs(b.detach().numpy()).max())


@pytest.mark.parametrize("dilate", [False, True], ids=["r50", "r50_dc5"])
def test_resnet50_matches_timm(dilate):
    reference = _reference("resnet50", output_stride=16 if dilate else 32)
    backbone = ResNetBackbone(50, dilate_last_stage=dilate)
    used = load_torchvision_resnet(backbone, reference.state_dict())
    leftover = {k for k in reference.state_dict() if k not in used and not k.endswith("num_batches_tracked")}
    assert leftover == set()
    # Odd size: exercises the symmetric padding at every stride.
    x, x_torch = images((2, 67, 75, 3))
    with torch.no_grad():
        expected = reference.forward_features(x_torch).permute(0, 2, 3, 1)
    out = backbone(x)
    assert tuple(out.shape) == tuple(expected.shape)
    # Relative to the largest activation: 50 layers of random weights grow it.
    assert _relative_diff(out, expected) <= 1e-5


def test_features_are_published_by_name():
    backbone = ResNetBackbone(50, image_shape=(64, 64, 3))
    maps = backbone.feature_extractor()(np.zeros((1, 64, 64, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "stem": (1, 16, 16, 64), "stage_1": (1, 16, 16, 256), "stage_2": (1, 8, 8, 512),
        "stage_3": (1, 4, 4, 1024), "stage_4": (1, 2, 2, 2048),
    }
    assert all(not w.trainable for layer in backbone.layers if "bn" in layer.name for w in layer.weights)
    clone = ResNetBackbone.from_config(backbone.get_config())
    reference = timm.create_model("resnet50", pretrained=False, num_classes=0)
    # Keras counts the BatchNorm moving statistics too; torch keeps them as buffers.
    expected = sum(p.numel() for p in reference.parameters()) + sum(
        b.numel() for n, b in reference.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    assert clone.count_params() == backbone.count_params() == expected


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNetBackbone(34)
    with pytest.raises(ValueError, match="image_shape must be"):
        ResNetBackbone(50, image_shape=(64, 64))
