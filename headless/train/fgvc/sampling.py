"""Triplet batches (seed 002's ``TripletOxfordFlowers``): every training image once per epoch as
an anchor, each followed by a positive (same class) and a negative (another class).

A step of ``batch_size`` images holds ``batch_size // 3`` triplets laid out ``a, p, n, a, p,
n, ...``, so contiguous sub-batches of a multiple of 3 hold whole triplets and the batch-hard
triplet loss always has a positive and a negative for every anchor. Everything is keyed like
:class:`headless.train.data.dataset.EpochBatches`: the anchor order by ``(seed, epoch)``, each
anchor's partners by ``(seed, epoch, anchor)``, so a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from headless.train.data.dataset import EpochBatches, sample_seed


class TripletBatches:
    def __init__(self, labels: list[int], batch_size: int, seed: int, epoch: int,
                 start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.labels = np.asarray(labels)
        self.anchors = max(1, batch_size // 3)
        self.seed, self.epoch, self.start, self.rank, self.world = seed, epoch, start, rank, world
        self.by_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}

    @staticmethod
    def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
        return max(1, n // (max(1, batch_size // 3) * world))

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch(len(self.labels), 3 * self.anchors, self.world)
                   - self.start)

    def triplet(self, anchor: int) -> tuple[int, int, int]:
        rng = np.random.default_rng(sample_seed(self.seed, self.epoch, anchor))
        c = int(self.labels[anchor])
        same = self.by_class[c][self.by_class[c] != anchor]
        other = np.flatnonzero(self.labels != c)
        pos = int(rng.choice(same)) if len(same) else anchor
        neg = int(rng.choice(other)) if len(other) else anchor
        return anchor, pos, neg

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = EpochBatches(len(self.labels), 1, self.seed, self.epoch).order()
        g = self.anchors * self.world
        for i in range(self.start, self.steps_per_epoch(len(self.labels), 3 * self.anchors,
                                                        self.world)):
            chunk = order[i * g:(i + 1) * g][self.rank::self.world]
            yield [(self.epoch, j) for a in chunk for j in self.triplet(a)]
