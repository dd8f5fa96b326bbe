"""detectron2's `.pkl` checkpoints, read without running code.

detectron2 publishes its model-zoo weights (ViTDet's included) as Python
pickles: `{"model": {name: numpy array}, "__author__": ..., ...}`. A pickle
can name any importable callable and call it while loading, so
`pickle.load` on a downloaded file may run code. This reader is a
`pickle.Unpickler` whose `find_class` resolves only what numpy arrays (and
the plain containers around them) need, `numpy`'s array reconstructors and
dtypes and `collections.OrderedDict`; any other global raises a
`ValueError` naming it before anything is called.

Why by hand: no library reads these files safely. torch's `weights_only`
loader reads torch's zip format, not raw pickles of numpy arrays, and
detectron2 (whose loader is a plain `pickle.load`) is not on the package
index.
"""

import collections
import os
import pickle

import numpy as np

# The globals a pickle of numpy arrays names (numpy 1 and numpy 2 paths,
# and the scalar reconstructor for 0-d values such as iteration counters).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        # detectron2's files were pickled by Python 2 era numpy: their byte
        # strings decode as latin-1 (what pickle.load(f, encoding="latin1")
        # does in detectron2's own loader).
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            if module == "collections":
                return collections.OrderedDict
            if name == "ndarray":
                return np.ndarray
            if name == "dtype":
                return np.dtype
            core = getattr(np, "_core", None) or np.core
            return core.numeric._frombuffer if name == "_frombuffer" else getattr(core.multiarray, name)
        raise ValueError(
            f"{self.path} is not a pickle of numpy arrays: it names {module}.{name}, which keras_vit does not "
            "load (a pickle can run code while loading). Only detectron2 checkpoints holding numpy arrays are "
            "read; convert other files to .safetensors first."
        )

    def persistent_load(self, pid):
        raise ValueError(f"{self.path} is not a pickle of numpy arrays: it has persistent ids (a torch.save file?).")


def load_detectron2_pickle(path):
    """`{name: numpy array}` of a detectron2 `.pkl` checkpoint (its
    `"model"` dict, or the whole pickle when it is a flat dict of arrays)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(f, path).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as error:
        raise ValueError(
            f"Cannot read {path} as a detectron2 checkpoint ({type(error).__name__}: {error}): the file is "
            "truncated or not a pickle. Download it again (delete it first if it is in the keras_vit cache)."
        ) from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path} holds no dict of arrays (detectron2 keeps its weights under 'model').")
    arrays = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise ValueError(
                f"{path} is not a detectron2 checkpoint of arrays: entry {key!r} is a {type(value).__name__}."
            )
        arrays[key] = value
    return arrays
