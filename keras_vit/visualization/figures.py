"""matplotlib set-up shared by the plots: a headless backend, a grid of axes, atomic PNG files."""

import numpy as np


def new_figure(rows, columns, tile=1.5):
    """A figure with a `(rows, columns)` numpy array of axes, Agg-safe."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        rows, columns, figsize=(max(tile * columns, 3), max(tile * rows, 2.5)), squeeze=False
    )
    return figure, np.asarray(axes)


def save_figure(figure, path, dpi=110, **savefig_kwargs):
    """Writes `figure` as a PNG at `path` atomically (rendered in memory, then
    a unique temporary file renamed into place) and closes it; returns `path`."""
    import io

    import matplotlib.pyplot as plt

    from keras_vit.utils.files import write_bytes_atomically

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, **savefig_kwargs)
    finally:
        plt.close(figure)
    write_bytes_atomically(path, buffer.getvalue())
    return path
