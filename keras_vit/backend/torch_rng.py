"""torch's global random state, for checkpoints.

Why torch here: Keras's torch backend draws the dropout masks of layers built
without a seed (`keras.layers.Dropout(rate)`, the default everywhere) from
torch's *global* generator (`torch.nn.functional.dropout`), not from the
layer's `SeedGenerator` variable, which the other backends use and which
`save_weights` stores. A resumed run must put that global state back to draw
the masks an uninterrupted run would have drawn. JAX and TensorFlow keep no
such state: these functions do nothing there.
"""

import base64

import keras


def get_global_rng_state():
    """torch's CPU (and CUDA) generator states as JSON-ready strings; None off torch."""
    if keras.backend.backend() != "torch":
        return None
    import torch

    def encode(tensor):
        return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")

    state = {"cpu": encode(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_global_rng_state(state):
    """Restores what `get_global_rng_state` returned (None: nothing to do)."""
    if state is None or keras.backend.backend() != "torch":
        return
    import numpy as np
    import torch

    def decode(text):
        return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())

    torch.set_rng_state(decode(state["cpu"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])
