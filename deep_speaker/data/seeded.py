"""The batch source every driver phase that draws random batches builds on."""

from __future__ import annotations

import keras
import numpy as np


class SeededBatches(keras.utils.PyDataset):
    """`steps` batches an epoch; batch `index` of epoch e is drawn by `batch(rng)` with the generator seeded by
    (seed, e, index), so a resumed run draws exactly what the uninterrupted one would have."""

    def __init__(self, steps: int, seed: int, initial_epoch: int = 0):
        super().__init__()
        self.steps, self.seed, self.epoch = steps, seed, initial_epoch

    def __len__(self):
        return self.steps

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, index):
        return self.batch(np.random.default_rng([self.seed, self.epoch, index]))

    def batch(self, rng: np.random.Generator):
        raise NotImplementedError
