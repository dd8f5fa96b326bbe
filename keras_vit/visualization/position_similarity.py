"""Cosine similarity of learned position embeddings (ViT paper, Figure 7 centre)."""

import numpy as np


def position_embedding_similarity(table, grid_size, num_prefix_tokens=1):
    """Cosine similarity between every pair of patch position embeddings.

    Args:
        table: `(1, P + h*w, D)` or `(P + h*w, D)` position-embedding table.
        grid_size: `(h, w)`.
        num_prefix_tokens: P, rows before the grid (the class token's).

    Returns:
        `(h, w, h, w)` array: `[i, j]` is the similarity map of patch (i, j)
        against all patches.
    """
    table = np.asarray(table, dtype="float64")
    if table.ndim == 3:
        table = table[0]
    h, w = grid_size
    if table.shape[0] != num_prefix_tokens + h * w:
        raise ValueError(
            f"table has {table.shape[0]} rows but grid_size={grid_size} and "
            f"num_prefix_tokens={num_prefix_tokens} need {num_prefix_tokens + h * w}."
        )
    grid = table[num_prefix_tokens:]
    grid = grid / np.maximum(np.linalg.norm(grid, axis=-1, keepdims=True), 1e-12)
    # (h*w, D) x (D, h*w) -> (h*w, h*w) -> (h, w, h, w)
    return (grid @ grid.T).reshape(h, w, h, w)


def plot_position_embedding_similarity(table, grid_size, num_prefix_tokens=1):
    """Figure: one tile per patch, showing its similarity to every other patch."""
    from keras_vit.visualization.figures import new_figure

    similarity = position_embedding_similarity(table, grid_size, num_prefix_tokens)
    h, w = grid_size
    figure, axes = new_figure(h, w, tile=0.6)
    image = None
    for i in range(h):
        for j in range(w):
            ax = axes[i, j]
            image = ax.imshow(similarity[i, j], vmin=-1, vmax=1, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(str(i + 1), fontsize=6)
            if i == h - 1:
                ax.set_xlabel(str(j + 1), fontsize=6)
    figure.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    figure.suptitle("Position embedding similarity")
    return figure
