"""A 2D convolution on channels-last tensors without layout copies on torch.

Why backend-specific: Keras 3.15's torch `conv` copies every input twice,
NHWC -> NCHW (`.contiguous()`) and straight back to channels-last memory
(`.contiguous(memory_format=torch.channels_last)`), although the permuted
view of an NHWC tensor already is channels-last in memory (keras-team/keras
issue 23279, fixed by pull request 23199, not in a release yet). On DETR-R50
at 800 x 1066 those copies were 37% of the forward time (docs/benchmarks.md).
Here the permuted view goes to torch as it is: oneDNN takes channels-last
memory, returns it, and permuting back to NHWC is again a view. The
arithmetic is torch's own convolution either way; other backends, and
configurations this does not cover (channels-first data, "same" padding with
a stride), keep Keras' `ops.conv`.
"""

import keras


def conv2d(inputs, kernel, strides, padding, dilation_rate, data_format):
    """`keras.ops.conv` for 2D inputs, without its layout copies on torch."""
    if (
        keras.backend.backend() != "torch"
        or data_format != "channels_last"
        or (padding == "same" and tuple(strides) != (1, 1))
    ):
        return keras.ops.conv(
            inputs, kernel, strides=strides, padding=padding, dilation_rate=dilation_rate, data_format=data_format
        )
    import torch

    # A no-op for a contiguous NHWC input; one copy for a strided view.
    x = keras.ops.convert_to_tensor(inputs).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    # (kh, kw, in / groups, out) -> torch's (out, in / groups, kh, kw), channels-last like the input.
    w = keras.ops.convert_to_tensor(kernel).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    groups = x.shape[1] // w.shape[1]
    y = torch.nn.functional.conv2d(
        x, w, stride=tuple(strides), padding="same" if padding == "same" else 0, dilation=tuple(dilation_rate),
        groups=groups,
    )
    return y.permute(0, 2, 3, 1)
