"""One checklist for every public layer: config round trip and JSON serialization."""

import json

import keras
import numpy as np


def check_config_round_trip(layer, inputs):
    """`from_config(get_config())` and a JSON serialize/deserialize rebuild the layer.

    The rebuilt layers, given the original's weights, give the same output.
    """
    expected = keras.ops.convert_to_numpy(layer(inputs))
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(inputs)), expected, atol=1e-6
    )
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer)
    assert restored.get_config() == config
    return clone


def to_np(x, dtype=None):
    """A numpy copy of a tensor or variable on any backend."""
    out = keras.ops.convert_to_numpy(x)
    return out if dtype is None else out.astype(dtype)
