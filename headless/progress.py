"""Progress reporting shared by the GUI and the CLI.

Compute is written once as a generator that yields :class:`Progress` items and *returns* its
result (``return value`` inside the generator). The CLI drives it with :func:`run_with_tqdm`; the
napari front end wraps the same generator in ``thread_worker`` and reads ``StopIteration.value``
as the worker's return value. One implementation, two front ends.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long computation: ``done`` of ``total`` units, with a short message."""

    done: int
    total: int
    message: str = ""


ProgressGen = Generator[Progress, None, T]


def run(gen: ProgressGen[T], callback: Callable[[Progress], Any] | None = None) -> T:
    """Drive a progress generator to the end and return its result."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(item)


def run_with_tqdm(gen: ProgressGen[T], desc: str = "", disable: bool = False) -> T:
    """Drive a progress generator with a tqdm bar on stderr (the CLI front end)."""
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, disable=disable, unit="step")
    try:

        def update(p: Progress) -> None:
            if bar.total != p.total:
                bar.total = p.total
            bar.n = p.done
            if p.message:
                bar.set_postfix_str(p.message, refresh=False)
            bar.refresh()

        return run(gen, update)
    finally:
        bar.close()
