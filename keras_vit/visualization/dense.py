"""Dense predictions as pictures: colourised depth maps and class-mask overlays."""

import numpy as np


def colorize_depth(depth, vmin=None, vmax=None, cmap="magma_r", invalid=(0, 0, 0)):
    """`(H, W)` depth -> `(H, W, 3)` uint8 RGB through a matplotlib colormap.

    Near is bright and far is dark with the default `"magma_r"`. Values are
    clipped to `[vmin, vmax]` (default: the finite, positive values' 2nd and
    98th percentiles); pixels that are not finite or not positive get the
    `invalid` colour.
    """
    import matplotlib

    depth = np.asarray(depth, "float64")
    if depth.ndim != 2:
        raise ValueError(f"depth must be an (H, W) map. Received: shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    if vmin is None or vmax is None:
        values = depth[valid] if valid.any() else np.array([0.0, 1.0])
        vmin = np.percentile(values, 2) if vmin is None else vmin
        vmax = np.percentile(values, 98) if vmax is None else vmax
    span = max(float(vmax) - float(vmin), 1e-12)
    scaled = np.clip((np.where(valid, depth, vmin) - vmin) / span, 0.0, 1.0)
    rgb = matplotlib.colormaps[cmap](scaled)[..., :3]
    rgb[~valid] = np.asarray(invalid, "float64") / 255.0
    return np.round(rgb * 255).astype("uint8")


def class_colours(num_classes, seed=0):
    """`(num_classes, 3)` uint8 colours, distinct for up to 20 classes
    (matplotlib's tab10 up to 10, tab20 up to 20), then drawn at random with `seed`."""
    import matplotlib

    palette = "tab10" if num_classes <= 10 else "tab20"
    base = np.round(np.asarray(matplotlib.colormaps[palette].colors) * 255).astype("uint8")
    if num_classes <= len(base):
        return base[:num_classes]
    extra = np.random.default_rng(seed).integers(0, 256, (num_classes - len(base), 3)).astype("uint8")
    return np.concatenate([base, extra])


def overlay_mask(image, labels, num_classes, alpha=0.5, ignore_index=255):
    """`image` `(H, W, 3)` ([0, 255], or [0, 1] floats) blended with the colour
    of each pixel's class in `labels` `(H, W)`; `ignore_index` pixels keep
    the image. Returns `(H, W, 3)` uint8."""
    image = np.asarray(image, "float64")
    labels = np.asarray(labels)
    if image.shape[:2] != labels.shape:
        raise ValueError(
            f"labels must be the image's (H, W). Received: image {image.shape}, labels {labels.shape}"
        )
    if image.max() <= 1.5:
        image = image * 255.0
    colours = class_colours(num_classes).astype("float64")
    known = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    tinted = colours[np.where(known, labels, 0)]
    blend = np.where(known[..., None], (1 - alpha) * image + alpha * tinted, image)
    return np.clip(np.round(blend), 0, 255).astype("uint8")


def _grid(rows, columns):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    return figure, axes


def plot_depth(images, predictions, truths=None, max_depth=None, titles=None):
    """A figure with one column per image: the image, the predicted depth and
    (when given) the true depth, colourised on one shared scale per image.

    Args:
        images: `(N, H, W, 3)`.
        predictions: `(N, H, W)` depth.
        truths: optional `(N, H, W)` depth (<= 0 where invalid).
        max_depth: optional cap of the colour scale.
        titles: optional list of strings, one per image.
    """
    images, predictions = np.asarray(images), np.asarray(predictions)
    rows = 2 if truths is None else 3
    figure, axes = _grid(rows, len(images))
    scale = 255.0 if images.max() > 1.5 else 1.0
    for index in range(len(images)):
        reference = predictions[index] if truths is None else np.asarray(truths[index])
        valid = np.isfinite(reference) & (reference > 0)
        low = float(np.percentile(reference[valid], 2)) if valid.any() else 0.0
        high = float(np.percentile(reference[valid], 98)) if valid.any() else 1.0
        high = min(high, max_depth) if max_depth else high
        axes[0, index].imshow(np.clip(images[index] / scale, 0, 1))
        axes[1, index].imshow(colorize_depth(predictions[index], low, high))
        if truths is not None:
            axes[2, index].imshow(colorize_depth(truths[index], low, high))
        if titles is not None:
            axes[0, index].set_title(titles[index], fontsize=8)
    axes[0, 0].text(-0.1, 0.5, "image", rotation=90, transform=axes[0, 0].transAxes, ha="right", va="center")
    axes[1, 0].text(-0.1, 0.5, "predicted", rotation=90, transform=axes[1, 0].transAxes, ha="right", va="center")
    if truths is not None:
        axes[2, 0].text(-0.1, 0.5, "true", rotation=90, transform=axes[2, 0].transAxes, ha="right", va="center")
    figure.tight_layout()
    return figure


def plot_segmentation(images, predictions, num_classes, truths=None, class_names=None, ignore_index=255, alpha=0.5):
    """A figure with one column per image: the predicted classes over the
    image and (when given) the true ones, with a legend of the classes seen.

    Args:
        images: `(N, H, W, 3)`.
        predictions: `(N, H, W)` int class maps.
        num_classes: int.
        truths: optional `(N, H, W)` int class maps (`ignore_index` where unlabelled).
        class_names: optional names by class index.
        ignore_index: int.
        alpha: float, the masks' opacity.
    """
    import matplotlib.patches as patches

    images, predictions = np.asarray(images), np.asarray(predictions)
    rows = 1 if truths is None else 2
    figure, axes = _grid(rows, len(images))
    for index in range(len(images)):
        axes[0, index].imshow(overlay_mask(images[index], predictions[index], num_classes, alpha, ignore_index))
        if truths is not None:
            axes[1, index].imshow(overlay_mask(images[index], truths[index], num_classes, alpha, ignore_index))
    axes[0, 0].text(-0.1, 0.5, "predicted", rotation=90, transform=axes[0, 0].transAxes, ha="right", va="center")
    if truths is not None:
        axes[1, 0].text(-0.1, 0.5, "true", rotation=90, transform=axes[1, 0].transAxes, ha="right", va="center")
    seen = np.unique(np.concatenate([predictions.ravel()] + ([np.asarray(truths).ravel()] if truths is not None else [])))
    seen = [int(c) for c in seen if 0 <= c < num_classes and c != ignore_index][:20]
    colours = class_colours(num_classes) / 255.0
    handles = [
        patches.Patch(color=colours[c], label=class_names[c] if class_names is not None else str(c)) for c in seen
    ]
    figure.tight_layout()
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
        figure.subplots_adjust(bottom=0.12)
    return figure
