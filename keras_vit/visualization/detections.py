"""Boxes over images: predictions (and optionally the ground truth)."""

import numpy as np


def plot_detections(images, detections, class_names=None, truths=None, score_threshold=0.5, columns=4, titles=None):
    """A grid of images with their detected boxes.

    Args:
        images: `(N, H, W, 3)` in [0, 255] (or [0, 1] floats).
        detections: dict of `"boxes"` `(N, K, 4)` pixel xyxy, `"labels"`
            `(N, K)` (-1 for none) and `"scores"` `(N, K)`, as
            `DETR.predict_detections` returns.
        class_names: optional list of names by label.
        truths: optional dict of `"boxes"` (xyxy) and `"labels"`, drawn dashed.
        score_threshold: boxes scoring below it are not drawn.
        columns: int.
        titles: optional list of strings.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    count = len(images)
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, min(columns, count), figsize=(3 * min(columns, count), 3 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    scale = 255.0 if images.max() > 1.5 else 1.0

    def name(label):
        return class_names[label] if class_names is not None and label < len(class_names) else str(label)

    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        axis.imshow(np.clip(images[index] / scale, 0, 1))
        if truths is not None:
            for box, label in zip(truths["boxes"][index], truths["labels"][index]):
                if label < 0:
                    continue
                x0, y0, x1, y1 = box
                axis.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1, ec="white"))
        for box, label, score in zip(detections["boxes"][index], detections["labels"][index], detections["scores"][index]):
            if label < 0 or score < score_threshold:
                continue
            x0, y0, x1, y1 = box
            colour = colours(int(label) % 10)
            axis.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2, ec=colour))
            axis.text(x0, y0, f"{name(int(label))} {score:.2f}", color="white", fontsize=7,
                      bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "lw": 0}, va="bottom")
        if titles is not None:
            axis.set_title(titles[index], fontsize=8)
    figure.tight_layout()
    return figure
