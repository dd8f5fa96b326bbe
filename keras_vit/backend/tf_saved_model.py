"""Running an exported SavedModel, to verify an export.

Why backend-specific: a SavedModel is TensorFlow's format, loaded with
`tf.saved_model.load` whatever the Keras backend that wrote it.
"""

import numpy as np
import tensorflow as tf
from keras import tree


def run_saved_model(path, inputs):
    """The flat outputs (numpy) of the SavedModel at `path`'s `serve` on `inputs`."""
    loaded = tf.saved_model.load(path)  # kept referenced while `serve` runs
    return [np.asarray(v) for v in tree.flatten(loaded.serve(inputs))]
