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


def attention_rollout(attention, grid_size, residual_weight=0.5, head_fusion="mean"):
    """Attention rollout (Abnar & Zuidema, 2020): class-token attention to each
    patch, propagated through every layer.

    Each layer's head-fused attention `A` is mixed with the identity for the
    residual connection, `A' = (1 - r) A + r I`, rows renormalised, and the
    layers multiplied from the first to the last.

    Args:
        attention: dict `{"block_{i}": (B, H, N, N)}` from
            `ViTBackbone.attention_maps`.
        grid_size: `(h, w)`; `N = 1 + h*w`.
        residual_weight: float in [0, 1], r.
        head_fusion: `"mean"`, `"max"` or `"min"` over heads.

    Returns:
        `(B, h, w)` numpy array.
    """
    fusions = {"mean": np.mean, "max": np.max, "min": np.min}
    if head_fusion not in fusions:
        raise ValueError(
            f"head_fusion must be one of {sorted(fusions)}. Received: head_fusion={head_fusion!r}"
        )
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(
            f"residual_weight must be in [0, 1]. Received: residual_weight={residual_weight}"
        )
    names = sorted(attention, key=lambda n: int(str(n).split("_")[-1]))
    rollout = None
    for name in names:
        probs = fusions[head_fusion](np.asarray(attention[name], dtype="float64"), axis=1)
        n = probs.shape[-1]
        probs = (1 - residual_weight) * probs + residual_weight * np.eye(n)
        probs = probs / probs.sum(-1, keepdims=True)
        # Later layers multiply on the left: (B, N, N) @ (B, N, N).
        rollout = probs if rollout is None else probs @ rollout
    h, w = grid_size
    if rollout.shape[-1] != 1 + h * w:
        raise ValueError(
            f"attention has {rollout.shape[-1]} tokens but grid_size={grid_size} needs {1 + h * w}."
        )
    return rollout[:, 0, 1:].reshape(-1, h, w)


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
    from keras_vit.visualization.figures import new_figure

    images = np.asarray(images)
    maps = np.asarray(maps)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    count = len(images)
    figure, axes = new_figure(2, count, tile=1.9)
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
