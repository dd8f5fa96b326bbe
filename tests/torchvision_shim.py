"""Makes `import timm` and `import transformers` work with the CPU torch 2.13.0.

Why: pip's only torchvision for torch==2.13.0 is a CUDA build whose compiled ops
do not load on the CPU wheel, so its import dies at
`register_fake("torchvision::nms")` ("operator torchvision::nms does not
exist"). timm imports torchvision, and so does transformers' image code. The
test suite only needs timm's and transformers' models, never torchvision's
kernels, so we declare the two op schemas torchvision registers fake kernels
for (`nms`, `qnms`) before the first import. Installing a CUDA torch build
instead would cost several GB. Calling these ops would still fail loudly.
"""

_LIBRARY = None


def declare_torchvision_ops():
    global _LIBRARY
    try:
        import torch
    except ImportError:
        return
    if _LIBRARY is not None:
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018 - present when torchvision's C++ ops load
        return
    except (AttributeError, RuntimeError):
        pass
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
