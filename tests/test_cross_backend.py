"""Weights saved under one backend load under another and give the same outputs.

Each CI run (one per backend) saves with its backend and loads in the next one
of the cycle jax -> tensorflow -> torch -> jax, so the three runs cover every
backend as writer and as reader.
"""

import os
import subprocess
import sys

import keras
import numpy as np

from keras_vit import ViT
from keras_vit import ViTBackbone
from layer_checks import to_np

NEXT = {"jax": "tensorflow", "tensorflow": "torch", "torch": "jax"}

LOAD_SCRIPT = """
import sys
import numpy as np
import keras
import keras_vit
model = keras_vit.ViT.from_preset(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x)))
bigger = keras_vit.ViT.from_preset(sys.argv[1], image_size=(36, 42))
np.save(sys.argv[4], keras.ops.convert_to_numpy(bigger(np.load(sys.argv[5]))))
print(keras.backend.backend())
"""


def test_weights_cross_backends(tmp_path):
    backbone = ViTBackbone(
        image_shape=(30, 30, 3), patch_size=3, hidden_dim=32, num_layers=2, num_heads=4,
        mlp_dim=37, layer_scale_init=0.5,
    )
    model = ViT(backbone, num_classes=5, representation_size=16)
    preset = str(tmp_path / "preset")
    model.save_to_preset(preset)
    x = np.random.default_rng(0).normal(size=(2, 30, 30, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    x_big = np.random.default_rng(1).normal(size=(2, 36, 42, 3)).astype("float32")
    np.save(tmp_path / "x_big.npy", x_big)
    other = NEXT[keras.backend.backend()]
    env = dict(os.environ, KERAS_BACKEND=other)
    result = subprocess.run(
        [
            sys.executable, "-c", LOAD_SCRIPT, preset, str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"), str(tmp_path / "y_big.npy"), str(tmp_path / "x_big.npy"),
        ],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == other
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), to_np(model(x)), atol=1e-5)
    # Resizing the position embeddings gives the same model on both backends.
    bigger = ViT.from_preset(preset, image_size=(36, 42))
    np.testing.assert_allclose(np.load(tmp_path / "y_big.npy"), to_np(bigger(x_big)), atol=1e-5)
