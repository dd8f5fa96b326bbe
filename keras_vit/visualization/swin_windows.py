"""Swin's shifted windows, drawn from the mask the model itself computes."""

import numpy as np


def plot_shifted_windows(block, height, width):
    """Draws what a `SwinTransformerBlock` does to an `height x width` map.

    Three panels: the map split into regular windows, each token coloured by
    the region the cyclic shift will move it into; the map after the shift,
    split into windows (tokens of different colours in one window are the
    pairs the mask keeps apart: they were not neighbours); and the attention mask of the first window containing
    more than one region, as the block adds it (0 or -100), read from
    `shifted_window_mask`, the function the block calls.

    Args:
        block: a `keras_vit.layers.SwinTransformerBlock` with a shift (or a
            `SwinBackbone`'s odd block, `backbone.get_layer("stage_1_block_1")`).
        height, width: the map's size in tokens (padded to the window, as the block does).

    Returns:
        `matplotlib.figure.Figure`.
    """
    from keras_vit.layers.swin_block import shifted_window_mask
    from keras_vit.visualization.figures import new_figure

    window, shift = block.window_size, block.shift_size
    if not shift:
        raise ValueError(f"block {block.name!r} has no shift (an even block, or a stage no larger than its window).")
    padded = (height + (-height) % window, width + (-width) % window)
    mask = shifted_window_mask(*padded, window, shift)
    rows = np.arange(padded[0])
    cols = np.arange(padded[1])
    # The region each position of the shifted map came from (as the mask's regions).
    regions = ((rows >= padded[0] - window).astype(int) + (rows >= padded[0] - shift))[:, None] * 3 + (
        (cols >= padded[1] - window).astype(int) + (cols >= padded[1] - shift)
    )[None]
    figure, axes = new_figure(1, 3, tile=3.2)
    # Before the shift (up-left by `shift`), the token now at p sat at p + shift.
    original = np.roll(regions, (shift, shift), axis=(0, 1))
    axes[0, 0].imshow(original, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    axes[0, 0].set_title(f"{padded[0]}x{padded[1]} tokens, windows of {window}x{window}", fontsize=9)
    axes[0, 1].imshow(regions, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    axes[0, 1].set_title(f"shifted by {shift}: regions by origin", fontsize=9)
    for ax in axes[0, :2]:
        for line in range(0, padded[0] + 1, window):
            ax.axhline(line - 0.5, color="black", linewidth=1.5)
        for line in range(0, padded[1] + 1, window):
            ax.axvline(line - 0.5, color="black", linewidth=1.5)
        ax.set_xticks([])
        ax.set_yticks([])
    mixed = next((i for i in range(len(mask)) if (mask[i] != 0).any()), 0)
    axes[0, 2].imshow(mask[mixed], cmap="gray", interpolation="nearest")
    axes[0, 2].set_title(f"mask of window {mixed} (black: -100)", fontsize=9)
    axes[0, 2].set_xlabel("key token")
    axes[0, 2].set_ylabel("query token")
    figure.tight_layout()
    return figure
