"""Reading PyTorch `.pth` / `.bin` checkpoints.

Why torch here: these files are torch pickles, and only `torch.load` can read
them. It is called with `weights_only=True`, which refuses to unpickle
anything but tensors and plain containers, so a checkpoint cannot run code.
torch is imported lazily, only when such a file is loaded.
"""


def load_torch_state_dict(path):
    """Returns `{name: numpy array}` from a torch checkpoint, safely.

    Nested checkpoints (`{"model": state_dict}` as in DETR/DeiT/Swin releases,
    `{"state_dict": ...}`, MViT's `{"model_state": ...}`) are unwrapped.
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading {path} needs torch (pip install 'keras-vit[torch]'), or convert "
            "it to .safetensors first."
        ) from error
    import pickle

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would run
        # whatever the file holds; keras_vit never does.
        raise ValueError(
            f"{path} holds pickled Python objects other than tensors (classes or calls that would run code when "
            "loaded). keras_vit never loads code from a checkpoint. Get the weights as .safetensors, or a "
            "state dict of tensors only, from the model's publisher."
        ) from None
    for key in ("model", "state_dict", "model_state_dict", "model_state"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{path} does not hold a state dict (found {type(checkpoint).__name__})."
        )
    out = {}
    for name, value in checkpoint.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            out[name] = value.numpy()
    return out
