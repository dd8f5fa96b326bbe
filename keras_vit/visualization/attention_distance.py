"""Mean attention distance per head and layer (ViT paper, Figure 7 right)."""

import numpy as np


def patch_distances(grid_size, patch_size):
    """`(h*w, h*w)` Euclidean pixel distances between patch centres."""
    h, w = grid_size
    ph, pw = (patch_size, patch_size) if np.isscalar(patch_size) else patch_size
    rows, cols = np.meshgrid(np.arange(h) * ph, np.arange(w) * pw, indexing="ij")
    centres = np.stack([rows.ravel(), cols.ravel()], axis=-1).astype("float64")
    # (N, 1, 2) - (1, N, 2) -> (N, N, 2)
    return np.linalg.norm(centres[:, None] - centres[None], axis=-1)


def mean_attention_distance(attention, grid_size, patch_size, num_prefix_tokens=1):
    """Attention-weighted pixel distance between query and key patches.

    For each query patch, the distance to every key patch weighted by the
    attention it pays; averaged over query patches and images ("attention
    distance", the analogue of a CNN's receptive field). Prefix tokens are left
    out as queries and as keys, and the remaining weights renormalised.

    Args:
        attention: dict `{"block_{i}": (B, H, N, N)}` (from
            `ViTBackbone.attention_maps`) or one `(B, H, N, N)` array.
        grid_size: `(h, w)`, `N = P + h*w`.
        patch_size: int or `(ph, pw)`, pixels per patch.
        num_prefix_tokens: P.

    Returns:
        `(L, H)` array of distances in pixels (`(H,)` for a single array).
    """
    if isinstance(attention, dict):
        names = sorted(attention, key=lambda n: int(str(n).split("_")[-1]))
        return np.stack(
            [mean_attention_distance(attention[n], grid_size, patch_size, num_prefix_tokens) for n in names]
        )
    probs = np.asarray(attention, dtype="float64")
    h, w = grid_size
    if probs.ndim != 4 or probs.shape[-1] != num_prefix_tokens + h * w:
        raise ValueError(
            "attention must have shape (B, H, N, N) with N = num_prefix_tokens + h*w = "
            f"{num_prefix_tokens + h * w}. Received: shape={probs.shape}"
        )
    p = num_prefix_tokens
    probs = probs[:, :, p:, p:]
    probs = probs / np.maximum(probs.sum(-1, keepdims=True), 1e-12)
    distances = patch_distances(grid_size, patch_size)
    # (B, H, Nq, Nk) * (Nq, Nk) -> sum over keys -> mean over queries and images
    return (probs * distances).sum(-1).mean(axis=(0, 2))


def plot_mean_attention_distance(distances):
    """Scatter of each head's mean attention distance against network depth."""
    from keras_vit.visualization.figures import new_figure

    distances = np.asarray(distances)
    figure, axes = new_figure(1, 1, tile=4.0)
    ax = axes[0, 0]
    layers, heads = distances.shape
    for head in range(heads):
        ax.scatter(np.arange(1, layers + 1), distances[:, head], s=10, label=f"head {head + 1}")
    ax.set_xticks(np.arange(1, layers + 1))
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_title("Size of attended area by head and depth")
    if heads <= 16:
        ax.legend(fontsize=5, ncol=2)
    return figure
