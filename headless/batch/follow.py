"""A batch run's progress, from every shard's ``progress.json`` (whatever the runner).

Each shard's worker rewrites its ``progress.json`` every few seconds (done, total, images/s,
ETA); summing them gives the run's progress for a local process, torchrun ranks or a SLURM array
alike, without reading the records themselves.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headless.batch.records import DONE_NAME, PROGRESS_NAME, shard_dir
from headless.progress import Progress


@dataclass(frozen=True)
class BatchProgress:
    done: int
    total: int
    images_per_s: float
    shards_done: int
    shards: int

    @property
    def eta_s(self) -> float | None:
        left = self.total - self.done
        return left / self.images_per_s if self.images_per_s > 0 else None

    def line(self) -> str:
        eta = self.eta_s
        eta_txt = "" if eta is None else f", ETA {format_seconds(eta)}"
        return (f"{self.done}/{self.total} images, {self.images_per_s:.2f} img/s{eta_txt}, "
                f"{self.shards_done}/{self.shards} shard(s) done")


def format_seconds(s: float) -> str:
    s = int(round(s))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def batch_progress(run_dir: str | Path, n_images: int, n_shards: int) -> BatchProgress:
    """The run's progress now (shards that have not started count as nothing done)."""
    from headless.store import read_json

    done, rate, finished, last_rate = 0, 0.0, 0, 0.0
    for i in range(n_shards):
        sdir = shard_dir(run_dir, i)
        is_done = (sdir / DONE_NAME).is_file()
        finished += is_done
        try:
            prog = read_json(sdir / PROGRESS_NAME)
        except (OSError, ValueError):
            continue
        if isinstance(prog, dict):
            done += int(prog.get("done") or 0)
            shard_rate = float(prog.get("images_per_s") or 0.0)
            if not is_done:
                rate += shard_rate
            else:
                last_rate = max(last_rate, shard_rate)
    # between shards (or at the end) no shard runs: the last finished shard's rate says more
    return BatchProgress(min(done, n_images), n_images, rate or last_rate, finished, n_shards)


def follow_batch(
    run_dir: str | Path, handle: Any, n_images: int, n_shards: int, poll: float = 1.0
) -> Generator[Progress, None, str]:
    """Progress until the run ends; returns its final state (for ``--wait`` and the docks)."""
    while True:
        prog = batch_progress(run_dir, n_images, n_shards)
        yield Progress(prog.done, prog.total, prog.line())
        state = handle.ended()
        if state is not None:
            prog = batch_progress(run_dir, n_images, n_shards)
            yield Progress(prog.done, prog.total, state)
            return state
        time.sleep(poll)
