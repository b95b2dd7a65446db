"""Images in, prepared batches out: decoding in loader processes, batching by input shape.

A ``torch.utils.data.DataLoader`` with workers runs each task's ``prepare`` (decode, resize,
normalise) in parallel with the forward pass of the previous batch. Batches are formed after
loading, per bucket (the padded network-input shape): an image waits until its bucket holds
``batch_size`` images, and when more than a few batches' worth wait, the fullest bucket goes
as it is; so memory stays bounded by a few batches whatever the folder's size, and padding is
never added beyond what a single image gets.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from typing import Any

from headless.batch.tasks.base import BatchTask, Prepared


class _PathDataset:
    """Map-style dataset: position -> the task's prepared image (errors kept, not raised)."""

    def __init__(self, task: BatchTask, paths: Sequence[str]) -> None:
        self.task, self.paths = task, list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Prepared:
        path = self.paths[i]
        try:
            return self.task.prepare(path)
        except (OSError, ValueError) as exc:  # ImageError included: the image fails, not the run
            from pathlib import Path

            return Prepared(path, Path(path).name, error=str(exc))


def _keep(item: Prepared) -> Prepared:
    return item


def _quiet_worker(worker_id: int) -> None:
    """Loader processes leave stop signals to the main process, which stops at a batch edge."""
    import torch

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # decoding is per process; the model gets the cores


def iter_prepared(
    task: BatchTask, paths: Sequence[str], num_workers: int = 2, pin_memory: bool = False
) -> Iterator[Prepared]:
    """Prepared images in order, decoded ahead by ``num_workers`` processes (0: in this one)."""
    if not paths:
        return iter(())
    if num_workers == 0:
        ds = _PathDataset(task, paths)
        return (ds[i] for i in range(len(ds)))
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _PathDataset(task, paths), batch_size=None, shuffle=False, num_workers=num_workers,
        collate_fn=_keep, worker_init_fn=_quiet_worker, pin_memory=pin_memory,
        prefetch_factor=4, persistent_workers=False,
    )
    return iter(loader)


def bucketed(
    items: Iterator[Prepared], task: BatchTask, batch_size: int, max_waiting: int | None = None
) -> Iterator[list[Prepared]]:
    """Group prepared images into batches of one bucket; failed images go alone at once."""
    waiting: dict[Any, list[Prepared]] = {}
    n_waiting = 0
    cap = max_waiting if max_waiting is not None else 4 * batch_size
    for item in items:
        if item.error is not None or not task.batches or batch_size == 1:
            yield [item]
            continue
        key = task.bucket(item)
        group = waiting.setdefault(key, [])
        group.append(item)
        n_waiting += 1
        if len(group) >= batch_size:
            n_waiting -= len(group)
            yield waiting.pop(key)
        elif n_waiting > cap:
            fullest = max(waiting, key=lambda k: len(waiting[k]))
            n_waiting -= len(waiting[fullest])
            yield waiting.pop(fullest)
    for key in list(waiting):
        yield waiting.pop(key)
