"""Principal components of the patch-embedding filters (ViT paper, Figure 7 left)."""

import numpy as np


def patch_embedding_components(kernel, num_components=28):
    """Top principal components of the linear patch-embedding filters.

    Each of the D filters is a vector of `ph * pw * C` pixel weights; the
    components are the leading right-singular vectors of the centred `(D, ph*pw*C)`
    filter matrix, reshaped back to patches, as in the paper's Figure 7 (left).

    Args:
        kernel: `(ph, pw, C, D)` patch-embedding kernel (e.g.
            `backbone.get_layer("patch_embedding").projection.kernel`), numpy.
        num_components: int, how many components to return.

    Returns:
        `(components, explained)`: `(k, ph, pw, C)` components, sign-normalised
        so their largest entry is positive, and the `(k,)` share of variance
        each explains.
    """
    kernel = np.asarray(kernel, dtype="float64")
    if kernel.ndim != 4:
        raise ValueError(
            f"kernel must have shape (ph, pw, C, D). Received: kernel.shape={kernel.shape}"
        )
    ph, pw, channels, width = kernel.shape
    # (ph, pw, C, D) -> (D, ph*pw*C): one row per filter.
    filters = kernel.reshape(ph * pw * channels, width).T
    filters = filters - filters.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(filters, full_matrices=False)
    k = min(int(num_components), vt.shape[0])
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    variance = singular**2
    explained = variance[:k] / variance.sum() if variance.sum() > 0 else np.zeros(k)
    return components.reshape(k, ph, pw, channels), explained


def plot_patch_embedding_components(kernel, num_components=28, columns=7):
    """Figure of the leading patch-embedding principal components as RGB tiles.

    Returns:
        `matplotlib.figure.Figure`.
    """
    from keras_vit.visualization.figures import new_figure

    components, explained = patch_embedding_components(kernel, num_components)
    rows = int(np.ceil(len(components) / columns))
    figure, axes = new_figure(rows, columns, tile=1.2)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(components):
            continue
        tile = components[i]
        # Each component scaled to [0, 1] for display.
        tile = (tile - tile.min()) / (np.ptp(tile) + 1e-12)
        ax.imshow(tile[..., 0] if tile.shape[-1] == 1 else tile[..., :3], cmap="gray")
        ax.set_title(f"{100 * explained[i]:.1f}%", fontsize=6)
    figure.suptitle("Patch-embedding filters: principal components")
    return figure
