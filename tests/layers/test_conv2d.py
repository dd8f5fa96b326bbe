"""keras_vit's Conv2D (every convolution in the library) equals
`keras.layers.Conv2D` with the same weights, outputs and gradients, on every
backend: the torch path that skips Keras' layout copies
(keras_vit/backend/torch_conv.py) changes where the activations sit in
memory, never the arithmetic. And it is what the library builds."""

import keras
import numpy as np
import pytest

from keras_vit import DETR
from keras_vit import ResNetBackbone
from keras_vit.layers.conv2d import Conv2D
from keras_vit.layers.std_conv2d import StdConv2D
from layer_checks import check_config_round_trip
from training_utils import gradients

CASES = {
    "3x3 same": dict(filters=5, kernel_size=3, padding="same"),
    "3x3 stride 2 valid": dict(filters=5, kernel_size=3, strides=2),
    "3x3 dilation 2 no bias": dict(filters=4, kernel_size=3, dilation_rate=2, use_bias=False),
    "1x1": dict(filters=6, kernel_size=1),
    "2x3 stride (2, 1)": dict(filters=3, kernel_size=(2, 3), strides=(2, 1)),
    "grouped": dict(filters=6, kernel_size=3, groups=3, padding="same"),
    # Keras' own path (torch cannot pad "same" with a stride).
    "3x3 stride 2 same": dict(filters=5, kernel_size=3, strides=2, padding="same"),
}


def _pair(arguments, seed):
    ours, theirs = Conv2D(**arguments), keras.layers.Conv2D(**arguments)
    ours.build((None, 11, 13, 6))
    theirs.build((None, 11, 13, 6))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 0.3, w.shape).astype("float32") for w in theirs.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


@pytest.mark.parametrize("case", list(CASES))
def test_equals_keras_conv2d(case):
    ours, theirs = _pair(CASES[case], seed=0)
    x = np.random.default_rng(1).normal(size=(2, 11, 13, 6)).astype("float32")  # odd H != W
    expected = keras.ops.convert_to_numpy(theirs(x))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours(x)), expected)
    # A strided view (not contiguous) as input: the same values.
    wide = np.random.default_rng(2).normal(size=(2, 11, 26, 6)).astype("float32")
    view = keras.ops.convert_to_tensor(wide)[:, :, ::2]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(view)), keras.ops.convert_to_numpy(theirs(view)), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("case", ["3x3 stride 2 valid", "grouped"])
def test_gradients_equal_keras_conv2d(case):
    ours, theirs = _pair(CASES[case], seed=3)
    x = np.random.default_rng(4).normal(size=(2, 11, 13, 6)).astype("float32")
    y = np.random.default_rng(5).normal(size=tuple(theirs.compute_output_shape((2, 11, 13, 6)))).astype("float32")
    loss = keras.losses.MeanSquaredError()
    # The kernel's and the bias' gradients (the helper takes a model).
    ours, theirs = (keras.Sequential([keras.Input((11, 13, 6)), layer]) for layer in (ours, theirs))
    for got, expected in zip(gradients(ours, x, y, loss), gradients(theirs, x, y, loss), strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(expected), atol=1e-6)


def test_mixed_precision_output_dtype():
    ours = Conv2D(4, 3, dtype="mixed_bfloat16")
    out = ours(np.ones((1, 7, 9, 3), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16" and ours.kernel.dtype == "float32"


def test_config_round_trips_and_the_library_builds_it():
    check_config_round_trip(Conv2D(4, 3, strides=2, padding="same", use_bias=False), np.ones((1, 7, 9, 3), "float32"))
    assert issubclass(StdConv2D, Conv2D)
    backbone = ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(8, 8, 16, 16))
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(isinstance(layer, Conv2D) for layer in convs)
    detr = DETR(backbone, num_classes=2, num_queries=3, hidden_dim=8, num_heads=2, encoder_layers=1, decoder_layers=1,
                ffn_dim=8)
    assert isinstance(detr.input_projection, Conv2D)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the layout copies are torch's (Keras 3.15)")
def test_no_layout_copy_of_the_activations_on_torch():
    import torch
    from torch.profiler import profile

    ours, theirs = _pair(CASES["3x3 stride 2 valid"], seed=6)
    x = keras.ops.convert_to_tensor(np.ones((2, 11, 13, 6), "float32"))

    def copies(layer):
        with profile(record_shapes=True) as run:
            out = layer(x)
        # Copies of activation size (the kernel's reordering is small and allowed).
        return out, sum(e.count for e in run.key_averages(group_by_input_shape=True)
                        if e.key == "aten::copy_" and e.input_shapes and list(e.input_shapes[0]) == [2, 6, 11, 13])

    got, ours_copies = copies(ours)
    expected, keras_copies = copies(theirs)
    assert keras_copies >= 1 and ours_copies == 0, (keras_copies, ours_copies)
    assert got.is_contiguous() and torch.equal(got, expected)
