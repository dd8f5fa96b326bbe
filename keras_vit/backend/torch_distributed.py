"""Data-parallel training with `torch.distributed`, inside Keras's own `fit`.

Why torch here: Keras 3.15 has no distribution API for the torch backend
(`keras.distribution` is JAX-only), so multi-process training on torch uses
torch's own engine: processes started by `torchrun` (which sets `RANK`,
`WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), a process group
(gloo on CPU, nccl on GPU), the initial weights broadcast from rank 0, and
every gradient averaged over the processes as soon as backward has
accumulated it (a post-accumulate-grad hook per parameter: the all-reduce of
DistributedDataParallel, without DDP's module wrapper, which Keras's trainer
cannot see through). Keras's torch trainer then applies the averaged
gradients, so every process holds the same weights after each step.
"""

import os

import keras


def launched_by_torchrun():
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def initialize():
    """Joins the process group torchrun describes (idempotent). Returns (rank, world_size)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def is_initialized():
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def replica_count():
    """The processes of the job (1 outside one)."""
    import torch.distributed as dist

    return dist.get_world_size() if is_initialized() else 1


def broadcast_variables(model):
    """Copies rank 0's values of every model variable to the other processes."""
    import torch.distributed as dist

    if not is_initialized():
        return
    for variable in model.variables:
        value = variable.value
        data = value.data if hasattr(value, "data") else value
        dist.broadcast(data, src=0)


def average_gradients(model):
    """Registers, once per parameter, a hook that all-reduces (mean) its
    gradient across processes when backward has accumulated it."""
    import torch.distributed as dist

    if not is_initialized():
        return
    count = float(dist.get_world_size())
    for variable in model.trainable_variables:
        parameter = variable.value
        if getattr(parameter, "_keras_vit_averaged", False):
            continue

        def hook(tensor):
            dist.all_reduce(tensor.grad, op=dist.ReduceOp.SUM)
            tensor.grad.div_(count)

        parameter.register_post_accumulate_grad_hook(hook)
        parameter._keras_vit_averaged = True


def all_reduce_sum(value):
    """The sum of `value` (a tensor) over the processes (a differentiable
    copy is not needed: callers reduce counts, not losses)."""
    import torch.distributed as dist

    if not is_initialized():
        return value
    total = keras.ops.convert_to_tensor(value).detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def shutdown():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
