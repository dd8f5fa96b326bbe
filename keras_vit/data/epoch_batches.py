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

    Pass `EpochBatches.epoch_callback()`'s result to `fit` with it so that the
    order follows the epoch `fit` is in (also after a resume), and
    `shuffle=False` (otherwise Keras reorders the batches with the global
    random state).
    """

    def __init__(self, x, y=None, batch_size=32, seed=0, shuffle=True):
        super().__init__()
        lengths = {len(a) for a in tree.flatten(x)} | ({len(a) for a in tree.flatten(y)} if y is not None else set())
        if len(lengths) != 1:
            raise ValueError(f"x and y must hold the same number of samples. Received lengths {sorted(lengths)}.")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
        self.x, self.y = x, y
        self.count = lengths.pop()
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
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
        return -(-self.count // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = tree.map_structure(lambda a: a[rows], self.x)
        if self.y is None:
            return x
        return x, tree.map_structure(lambda a: a[rows], self.y)
