"""Colourised depth and class-mask overlays: exact colours against
matplotlib's colormaps, invalid and ignored pixels, argument checks."""

import matplotlib
import numpy as np
import pytest

from keras_vit.visualization import class_colours
from keras_vit.visualization import colorize_depth
from keras_vit.visualization import overlay_mask
from keras_vit.visualization import plot_depth
from keras_vit.visualization import plot_segmentation


def test_colorize_depth_uses_the_colormap_and_marks_invalid_pixels():
    depth = np.array([[1.0, 2.0, 3.0], [0.0, np.nan, 5.0]])
    rgb = colorize_depth(depth, vmin=1.0, vmax=5.0)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    expected = np.round(np.asarray(matplotlib.colormaps["magma_r"]([0.0, 0.25, 0.5, 1.0]))[:, :3] * 255)
    np.testing.assert_array_equal(rgb[[0, 0, 0, 1], [0, 1, 2, 2]], expected)
    np.testing.assert_array_equal(rgb[1, :2], 0)  # 0 and NaN: invalid, black
    # Default range: the valid values' 2nd to 98th percentiles; near is brighter than far.
    auto = colorize_depth(np.linspace(1, 10, 100).reshape(10, 10))
    assert auto[0, 0].astype(int).sum() > auto[-1, -1].astype(int).sum()
    with pytest.raises(ValueError, match=r"depth must be an \(H, W\) map"):
        colorize_depth(np.ones((2, 2, 1)))


def test_overlay_mask_blends_class_colours_and_keeps_ignored_pixels():
    image = np.full((2, 2, 3), 100, "uint8")
    labels = np.array([[0, 1], [255, 2]])
    out = overlay_mask(image, labels, num_classes=3, alpha=0.5)
    colours = class_colours(3).astype(float)
    np.testing.assert_array_equal(out[0, 0], np.round(0.5 * 100 + 0.5 * colours[0]))
    np.testing.assert_array_equal(out[1, 1], np.round(0.5 * 100 + 0.5 * colours[2]))
    np.testing.assert_array_equal(out[1, 0], 100)  # ignored: the image as it was
    assert len({tuple(c) for c in class_colours(40)}) == 40
    with pytest.raises(ValueError, match="labels must be the image's"):
        overlay_mask(image, labels[:1], 3)


def test_plots_build_figures():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (3, 8, 8, 3))
    depth = rng.uniform(1, 5, (3, 8, 8))
    figure = plot_depth(images, depth, depth)
    assert len(figure.axes) == 9
    labels = rng.integers(0, 4, (3, 8, 8))
    figure = plot_segmentation(images, labels, 4, labels, ["a", "b", "c", "d"])
    assert len(figure.axes) == 6 and len(figure.legends) == 1


def test_shifted_window_figure_is_the_blocks_mask():
    """The figure's mask panel is the block's own mask (a window of two
    regions: -100 between them), and a block without shift is refused."""
    from keras_vit.layers.swin_block import SwinTransformerBlock
    from keras_vit.layers.swin_block import shifted_window_mask
    from keras_vit.visualization import plot_shifted_windows

    figure = plot_shifted_windows(SwinTransformerBlock(6, 3, 7, shift_size=3), 14, 14)
    shown = figure.axes[2].images[0].get_array()
    np.testing.assert_array_equal(shown, shifted_window_mask(14, 14, 7, 3)[1])
    assert set(np.unique(shown)) == {0.0, -100.0}
    with pytest.raises(ValueError, match="has no shift"):
        plot_shifted_windows(SwinTransformerBlock(6, 3, 7), 14, 14)
