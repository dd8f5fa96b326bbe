"""Attention maps over input images, as matplotlib figures."""

import numpy as np


def class_token_attention(attention, grid_size, block=None):
    """Class-token attention to each patch, averaged over heads.

    Args:
        attention: dict `{"block_{i}": (B, H, N, N)}` from
            `ViTBackbone.attention_maps`, values as numpy arrays.
        grid_size: `(h, w)` patch grid; `N = 1 + h*w`.
        block: name of the block to read; the last one by default.

    Returns:
        `(B, h, w)` numpy array, each map summing to at most one.
    """
    names = sorted(attention, key=lambda n: int(n.split("_")[-1]))
    block = names[-1] if block is None else block
    probs = np.asarray(attention[block], dtype="float32")
    h, w = grid_size
    if probs.shape[-1] != 1 + h * w:
        raise ValueError(
            f"attention has {probs.shape[-1]} tokens but grid_size={grid_size} needs "
            f"{1 + h * w} (a class token plus the grid)."
        )
    # (B, H, N, N) -> class-token row, patches only -> (B, h, w)
    return probs[:, :, 0, 1:].mean(axis=1).reshape(-1, h, w)


def plot_attention_maps(images, maps, titles=None, alpha=0.6):
    """Draws each image beside its attention map laid over it.

    Args:
        images: `(B, H, W)` or `(B, H, W, C)` numpy images in [0, 1].
        maps: `(B, h, w)` attention per patch (e.g. `class_token_attention`).
        titles: optional list of B strings.
        alpha: opacity of the overlaid map.

    Returns:
        `matplotlib.figure.Figure` with two rows: images, then overlays.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    maps = np.asarray(maps)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    count = len(images)
    figure, axes = plt.subplots(2, count, figsize=(1.8 * count, 3.8), squeeze=False)
    for i in range(count):
        height, width = images[i].shape[:2]
        cmap = "gray" if images[i].ndim == 2 else None
        axes[0, i].imshow(images[i], cmap=cmap)
        axes[1, i].imshow(images[i], cmap=cmap)
        axes[1, i].imshow(
            maps[i], cmap="inferno", alpha=alpha, extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            interpolation="nearest",
        )
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
    axes[0, 0].text(-0.3, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90, va="center")
    axes[1, 0].text(-0.3, 0.5, "[class] attention", transform=axes[1, 0].transAxes, rotation=90, va="center")
    figure.tight_layout()
    return figure
