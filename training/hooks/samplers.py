"""Index streams for the trainer's dataloader, each a pure function of (seed, epoch, state).

HF's ``Trainer`` asks ``_get_train_sampler`` for a sampler once per ``train()`` and calls its
``set_epoch`` before every epoch (transformers 5: also through accelerate's ``BatchSamplerShard``).
Every sampler here regenerates epoch ``e``'s indices from the seed and ``e`` alone (plus the
hook's saved state), so every rank of a launch builds the same stream (accelerate shards it by
batch), a resume replays the interrupted epoch exactly (``skip_first_batches`` skips into the same
order), and exposure can be counted afterwards from the streams (``training.hooks.exposure``).

``EpochShuffle`` is what a stage without a sampler hook trains with: a fresh permutation of the
dataset per epoch (``torch.randperm`` seeded with (seed, epoch)), the stock ``RandomSampler``'s
distribution, but regenerable per epoch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(s) & 0xFFFFFFFF for s in salt]])


class StreamSampler:
    """A sampler whose epoch ``e`` yields ``self.indices(e)``; ``len`` is the current epoch's length."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def indices(self, epoch: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        return iter(self.indices(self.epoch).tolist())

    def __len__(self) -> int:
        return len(self.indices(self.epoch))


class EpochShuffle(StreamSampler):
    def indices(self, epoch: int) -> np.ndarray:
        return rng(self.seed, epoch).permutation(self.n)


class FunctionSampler(StreamSampler):
    """A stream given by a function ``epoch -> indices`` (hooks build theirs with it)."""

    def __init__(self, n: int, seed: int, fn: Callable[[int], np.ndarray], length: Callable[[int], int] | None = None):
        super().__init__(n, seed)
        self.fn, self.length = fn, length

    def indices(self, epoch: int) -> np.ndarray:
        return np.asarray(self.fn(epoch), dtype=np.int64)

    def __len__(self) -> int:
        return self.length(self.epoch) if self.length else len(self.indices(self.epoch))
