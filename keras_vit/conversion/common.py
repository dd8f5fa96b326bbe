"""Helpers shared by the checkpoint converters: plain numpy, no framework imports."""

import numpy as np


def to_numpy(value):
    """A numpy array from a numpy array, a torch tensor or anything array-like.

    Duck-typed so that importing the converters never imports torch.
    """
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def assign(variable, value, key):
    """Assigns `value` to a Keras variable, naming the checkpoint key on mismatch."""
    value = to_numpy(value)
    if tuple(variable.shape) != tuple(value.shape):
        raise ValueError(
            f"Checkpoint tensor {key!r} has shape {tuple(value.shape)} but the Keras "
            f"variable {variable.path!r} has shape {tuple(variable.shape)}. Build the "
            "model with the checkpoint's config (hidden size, depth, patch size, "
            "image size, number of classes)."
        )
    variable.assign(value.astype(np.dtype(variable.dtype)))


def linear(layer, state_dict, prefix):
    """torch Linear `(out, in)` -> Keras Dense `(in, out)`."""
    assign(layer.kernel, to_numpy(state_dict[f"{prefix}.weight"]).T, f"{prefix}.weight")
    if layer.bias is not None:
        assign(layer.bias, state_dict[f"{prefix}.bias"], f"{prefix}.bias")


def layer_norm(layer, state_dict, prefix):
    assign(layer.gamma, state_dict[f"{prefix}.weight"], f"{prefix}.weight")
    assign(layer.beta, state_dict[f"{prefix}.bias"], f"{prefix}.bias")


def conv2d(layer, state_dict, prefix):
    """torch Conv2d `(O, I, kh, kw)` -> Keras Conv2D `(kh, kw, I, O)`."""
    kernel = to_numpy(state_dict[f"{prefix}.weight"]).transpose(2, 3, 1, 0)
    assign(layer.kernel, kernel, f"{prefix}.weight")
    if layer.bias is not None:
        assign(layer.bias, state_dict[f"{prefix}.bias"], f"{prefix}.bias")


def check_all_used(state_dict, used, source, ignore=()):
    """Raises if the checkpoint holds tensors the converter did not place."""
    unused = sorted(
        k for k in state_dict if k not in used and not any(k.startswith(p) for p in ignore)
    )
    if unused:
        raise ValueError(
            f"{len(unused)} {source} checkpoint tensor(s) have no place in the Keras "
            f"model: {unused[:8]}{' ...' if len(unused) > 8 else ''}. The checkpoint "
            "has parts this architecture lacks (check the config)."
        )


class TrackedDict(dict):
    """A dict that records which keys were read, to find unused tensors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = set()

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(
                f"The checkpoint has no tensor {key!r}; it does not match this "
                "architecture or source format."
            )
        self.used.add(key)
        return super().__getitem__(key)


def image_size_for(image_size, num_grid_tokens, patch_size):
    """`(H, W)`: the given size, or the square grid a position table holds."""
    if image_size is None:
        side = int(round(num_grid_tokens**0.5))
        return (side * patch_size[0], side * patch_size[1])
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(image_size)
