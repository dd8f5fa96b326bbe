"""keras_vit: vision transformers for Keras 3 on JAX, TensorFlow and PyTorch."""

import os as _os
import sys as _sys

from keras_vit.version import __version__


def _started_as_the_command():
    """True in a `keras-vit` or `python -m keras_vit.cli` process: there the
    public names load on first use, so that `--help`, a usage error or
    `--backend` (which must set KERAS_BACKEND before Keras is imported) do
    not wait for Keras and its backend to import."""
    argv = list(getattr(_sys, "orig_argv", None) or getattr(_sys, "argv", None) or [])
    if any(_os.path.basename(a) in ("keras-vit", "keras-vit.exe") for a in argv[:2]):
        return True
    return any(a == "-m" and b == "keras_vit.cli" for a, b in zip(argv, argv[1:]))


if _started_as_the_command():

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")
        import importlib

        # import_module, not `from keras_vit import _api`: that form would
        # look the name up on this module first and call __getattr__ again.
        _api = importlib.import_module("keras_vit._api")

        if name not in _api.__all__:
            raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")
        globals().update({key: getattr(_api, key) for key in _api.__all__})
        return globals()[name]

else:
    from keras_vit._api import *  # noqa: F401,F403
    from keras_vit._api import __all__ as _public

    __all__ = [*_public, "__version__"]
    del _public
