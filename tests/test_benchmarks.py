"""The arithmetic the benchmarks report: FLOPs of a ViT and the token-count law.

benchmarks/ is not part of the library; its timings are never asserted here
(they are measured, in one run, by the scripts). What is asserted is what
turns a timing into a claim: the FLOP count that gives "fraction of the
matmul peak" and the scaling law, against torch's own FLOP counter on timm's
ViT, and how the peer benchmark groups its cases.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import bench_peers  # noqa: E402
import bench_vit  # noqa: E402


@pytest.mark.parametrize("image_size", [30, 45])
def test_vit_flops_equal_torch_flop_counter_on_timm(image_size):
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer
    from torch.utils.flop_counter import FlopCounterMode

    # Odd sizes: 10 or 15 patches a side, width 32, MLP 37, 7 classes.
    model = VisionTransformer(
        img_size=image_size, patch_size=3, embed_dim=32, depth=2, num_heads=4, mlp_ratio=37 / 32, num_classes=7
    ).eval()
    assert model.blocks[0].mlp.fc1.out_features == 37
    # torch's counter has no formula for the CPU fused-attention kernel; timm's
    # explicit path (q @ k^T, softmax, @ v) is counted as the two matmuls it is.
    for block in model.blocks:
        block.attn.fused_attn = False
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    counts = counter.get_flop_counts()["Global"]
    assert set(counts) >= {torch.ops.aten.convolution, torch.ops.aten.addmm, torch.ops.aten.bmm}, counts
    expected = bench_vit.vit_forward_flops(image_size=image_size, patch=3, width=32, depth=2, mlp=37, classes=7)
    assert counter.get_total_flops() == expected


def test_scaling_law_is_the_flop_ratio_of_the_token_count():
    flops = {size: bench_vit.vit_forward_flops(image_size=size) for size in bench_peers.SIZES}
    # An implementation whose time follows the FLOPs exactly, one whose time is constant.
    rows = {}
    for size in bench_peers.SIZES:
        rows[("exact", size)] = [flops[size] * 1e-11]
        rows[("flat", size)] = [1.0]
    law = bench_peers._scaling_law(rows)
    for size in bench_peers.SIZES:
        cell = law["exact"][str(size)]
        assert cell["time_ratio"] == pytest.approx(cell["flop_ratio"], rel=1e-12)
        assert cell["tokens"] == (size // 16) ** 2 + 1
        assert law["flat"][str(size)]["time_ratio"] == 1.0
    # 197 -> 577 -> 1025 tokens of ViT-B/16.
    assert law["exact"]["384"]["flop_ratio"] == pytest.approx(3.16, abs=0.005)
    assert law["exact"]["512"]["flop_ratio"] == pytest.approx(6.09, abs=0.005)


def test_peer_cases_put_keras_vit_first_and_each_peer_on_its_backend():
    groups = bench_peers._cases("all", list(bench_peers.BACKENDS))
    names = [(group, backend) for group, backend, _ in groups]
    assert ("vit_ti_train", "jax") in names and ("detr_forward", "torch") in names
    for group, backend, cases in groups:
        impls = [impl for impl, _ in cases]
        assert impls[0] == "keras_vit"  # ratios are keras_vit over the others
        assert ("timm" in impls) == (backend == "torch" and group.startswith(("vit", "scaling")))
        assert ("keras_hub" in impls) == (not group.startswith("detr"))
        assert ("transformers" in impls) == group.startswith("detr")
    # Without torch there is no DETR comparison and no timm.
    assert all(backend != "torch" for _, backend, _ in bench_peers._cases("all", ["jax"]))
