"""matplotlib set-up shared by the plots: a headless backend, a grid of axes."""

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
