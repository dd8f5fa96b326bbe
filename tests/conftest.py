import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from torchvision_shim import declare_torchvision_ops  # noqa: E402

# Must run before anything imports timm or transformers' vision code.
declare_torchvision_ops()

import keras  # noqa: E402

# Tiny, odd-sized config: a swapped axis or a wrong head split fails loudly.
TINY = {
    "image_shape": (30, 30, 3),
    "patch_size": 3,
    "hidden_dim": 32,
    "num_layers": 2,
    "num_heads": 4,
    "mlp_dim": 37,
}


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)
