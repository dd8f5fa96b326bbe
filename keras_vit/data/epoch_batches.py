"""Shuffled batches whose order depends only on (seed, epoch).

Keras shuffles arrays given to `fit(shuffle=True)` with the global random
state (numpy's on JAX and torch, TensorFlow's in a tf.data pipeline), which a
restarted process cannot put back where it was: a run resumed after epoch 7
would see other batches than the uninterrupted run did. `EpochBatches` draws
epoch e's order from `numpy.random.default_rng((seed, e))`, so a resumed run
sees exactly the batches the uninterrupted run saw (`CrashSafeBackup` and the
recipes rely on it).
"""

import keras
import numpy as np
from keras import tree


class EpochBatches(keras.utils.PyDataset):
    """`(x, y)` numpy arrays (nested structures allowed) in per-epoch shuffled batches.

    Args:
        x: array or nested structure of arrays, all with the same first axis.
        y: the same for targets, or None.
        batch_size: int; the last batch of an epoch may be smaller.
        seed: int, with the epoch, fixes the order.
        shuffle: bool; False keeps the arrays' order.
        drop_remainder: bool; leave out the last batch of an epoch when it
            is smaller than `batch_size` (data parallelism splits every
            batch evenly over the replicas).
        shard: `(index, count)`: yield only part `index` of `count` equal
            parts of each batch (one process of a torch.distributed job,
            `DistributionPlan.process_shard()`); `batch_size` stays the
            global batch and must be divisible by `count`.

    Pass `EpochBatches.epoch_callback()`'s result to `fit` with it so that the
    order follows the epoch `fit` is in (also after a resume), and
    `shuffle=False` (otherwise Keras reorders the batches with the global
    random state).
    """

    def __init__(self, x, y=None, batch_size=32, seed=0, shuffle=True, drop_remainder=False, shard=(0, 1)):
        super().__init__()
        lengths = {len(a) for a in tree.flatten(x)} | ({len(a) for a in tree.flatten(y)} if y is not None else set())
        if len(lengths) != 1:
            raise ValueError(f"x and y must hold the same number of samples. Received lengths {sorted(lengths)}.")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
        self.x, self.y = x, y
        self.count = lengths.pop()
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        index, count = shard
        if not (isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count):
            raise ValueError(f"shard must be (index, count) with 0 <= index < count. Received: shard={shard!r}")
        if self.batch_size % count:
            raise ValueError(
                f"batch_size (the global batch) must be divisible by the shard count {count}. "
                f"Received: batch_size={batch_size}"
            )
        if count > 1 and not drop_remainder and self.count % self.batch_size:
            raise ValueError(
                f"{self.count} samples leave a last batch of {self.count % self.batch_size}, which does not split over "
                f"{count} shards: pass drop_remainder=True."
            )
        self.drop_remainder, self.shard = bool(drop_remainder), (index, count)
        if self.drop_remainder and self.count < self.batch_size:
            raise ValueError(
                f"drop_remainder=True with {self.count} samples and batch_size={batch_size} leaves no batch."
            )
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)
        if self.shuffle:
            self.order = np.random.default_rng((self.seed, self.epoch)).permutation(self.count)
        else:
            self.order = np.arange(self.count)

    def epoch_callback(self):
        """A callback that sets the epoch at the start of each of `fit`'s epochs."""
        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: self.set_epoch(epoch))

    def __len__(self):
        if self.drop_remainder:
            return self.count // self.batch_size
        return -(-self.count // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        part, count = self.shard
        if count > 1:
            size = len(rows) // count
            rows = rows[part * size:(part + 1) * size]
        x = tree.map_structure(lambda a: a[rows], self.x)
        if self.y is None:
            return x
        return x, tree.map_structure(lambda a: a[rows], self.y)
