"""ONNX export from the torch backend with a dynamic batch.

Why backend-specific: Keras' torch ONNX path uses TorchScript tracing
whenever an input has a dynamic dimension, and TorchScript fails on Keras'
layer normalisation (`SymbolicValueError: Failed to export a node ...
onnx::Gather`, ERRATA: ship issue). `torch.export` (the dynamo exporter)
handles it when the batch is declared as a `torch.export.Dim`; Keras passes
it a `dynamic_shapes` structure that does not match a Functional model's
`forward(*args)`, so the call is made here with the right structure.
"""

import numpy as np
import torch


def export_onnx(model, filepath, shapes, names, batch_size=None):
    """Writes `model` (a built Keras Functional model on the torch backend)
    to the ONNX file `filepath`, inputs `names` of `shapes`, with a dynamic
    first (batch) dimension when `batch_size` is None."""
    batch = torch.export.Dim("batch", min=1, max=4096) if batch_size is None else None
    # Two samples for a dynamic batch: a batch of 1 would be specialised by torch.export.
    samples = tuple(torch.from_numpy(np.zeros((batch_size or 2, *shape[1:]), "float32")) for shape in shapes)
    axes = {0: batch} if batch is not None else None
    if len(samples) == 1:
        args, dynamic = (samples[0],), ((axes,),)
    else:  # forward(*args) receives the list of inputs as one argument
        args, dynamic = (list(samples),), (([axes for _ in samples],),)
    if batch is None:
        dynamic = None
    model.eval()
    program = torch.onnx.export(model, args, dynamo=True, input_names=list(names), dynamic_shapes=dynamic)
    program.optimize()
    program.save(filepath)
