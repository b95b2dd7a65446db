"""The ``batch`` job: run this process's shards, then merge once every shard is done.

Which shards a process takes: a SLURM array task its own (``DINOSEG_SHARD``, set by the slurm
runner); a torchrun rank every ``world``-th from its rank; a local worker all of them, one after
the other. Every process stops at a batch boundary when asked (cancel, pre-emption); what it
finished is on disk, and a resumed run skips it. The last process to finish merges; under
torchrun rank 0 waits for the other ranks' shards and merges.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from headless.batch.records import DONE_NAME, INFO_NAME, PROGRESS_NAME, RECORDS_NAME, shard_dir
from headless.batch.shards import image_key, settings_digest, shard_of

SHARD_ENV = "DINOSEG_SHARD"


def my_shards(n_shards: int) -> list[int]:
    """The shards this process runs (see the module docstring)."""
    if os.environ.get(SHARD_ENV, "").strip():
        return [int(os.environ[SHARD_ENV])]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return list(range(rank, n_shards, world)) if world > 1 else list(range(n_shards))


def _device(spec: Any) -> str:
    import torch

    if spec.device != "auto":
        return spec.device
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu"


def preflight(spec: Any) -> dict[str, Any]:
    """Everything that would stop the run, checked before it starts (one-line messages)."""
    from headless.batch.tasks import get_task

    if not spec.images:
        raise ValueError("the batch run has no images")
    images = [Path(p) for p in spec.images]
    missing = [p for p in images if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{missing[0]}: no such image file{more}")
    if spec.shards > len(images):
        raise ValueError(f"{spec.shards} shards for {len(images)} image(s): use at most one "
                         "shard per image")
    task = get_task(spec.task, spec.options, spec.out)
    summary = task.check(images) or {}
    _check_memory(task, images, spec)
    return summary


def _check_memory(task: Any, images: list[Path], spec: Any) -> None:
    """The task's per-worker estimate against the engine's memory limit (what is free now,
    or ``DINOSEG_MAX_MEMORY``; :func:`headless.features.highres.memory.memory_limit`)."""
    from headless.features.highres.memory import memory_limit

    need = task.memory_estimate(images, spec.batch_size)
    have = memory_limit()
    if need and need > have:
        raise ValueError(f"this run needs about {need / 2**30:.1f} GiB per worker and "
                         f"{have / 2**30:.1f} GiB are free: lower batch_size or the image size")


class _Meter:
    """Images/s over the run so far and the ETA, logged every few seconds."""

    def __init__(self, total: int, already: int, log: Any, run_dir: Path) -> None:
        self.total, self.done, self.start_done = total, already, already
        self.t0 = self.last = time.monotonic()
        self.log, self.run_dir = log, run_dir

    def add(self, n: int, shard: Path, force: bool = False) -> None:
        from headless.store import atomic_write_json

        self.done += n
        now = time.monotonic()
        if not force and now - self.last < 2.0:
            return
        self.last = now
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        left = self.total - self.done
        eta = left / rate if rate > 0 else None
        fields = dict(done=self.done, total=self.total, images_per_s=round(rate, 3),
                      eta_s=None if eta is None else round(eta, 1))
        atomic_write_json(shard / PROGRESS_NAME, fields)
        self.log.append("batch", **fields)


def run_shard(spec: Any, task: Any, run_dir: Path, index: int, images: list[Path],
              digest: str, stop: Any, log: Any) -> bool:
    """Process the pending images of one shard; True when the shard is complete."""
    from headless.batch.loader import bucketed, iter_prepared
    from headless.batch.records import RecordWriter, done_keys
    from headless.store import atomic_write_json

    sdir = shard_dir(run_dir, index)
    mine = shard_of(images, spec.shards, index)
    keys = {str(p): image_key(p, digest) for p in mine}
    finished = done_keys(sdir / RECORDS_NAME)
    pending = [str(p) for p in mine if keys[str(p)] not in finished]
    meter = _Meter(len(mine), len(mine) - len(pending), log, run_dir)
    log.append("shard", shard=index, images=len(mine), pending=len(pending))
    pin = str(task.device).startswith("cuda")
    items = iter_prepared(task, pending, num_workers=spec.num_workers, pin_memory=pin)
    written = 0
    with RecordWriter(sdir / RECORDS_NAME) as writer:
        try:
            for batch in bucketed(items, task, spec.batch_size):
                ok = [b for b in batch if b.error is None]
                results = task.process(ok) if ok else []
                by_path = dict(zip((b.path for b in ok), results))
                for item in batch:
                    res = by_path.get(item.path, {"error": item.error})
                    writer.append({"key": keys[item.path], "image": item.path,
                                   "name": item.name, **res})
                written += len(batch)
                meter.add(len(batch), sdir)
                if stop is not None and stop.requested:
                    break
        finally:
            del items  # shuts the loader's processes down
    meter.add(0, sdir, force=True)
    complete = written == len(pending)  # every pending image has its record now
    if complete:
        atomic_write_json(sdir / DONE_NAME, {"images": len(mine), "digest": digest,
                                             "time": round(time.time(), 3)})
    return complete


def all_done(run_dir: Path, n_shards: int) -> bool:
    return all((shard_dir(run_dir, i) / DONE_NAME).is_file() for i in range(n_shards))


def run(spec: Any, run_dir: str | Path, stop: Any = None, log: Any = None) -> str:
    """The worker's entry point (``headless.jobs``): "completed" or "stopped"."""
    import torch

    from headless.batch.merge import merge_once
    from headless.batch.tasks import get_task
    from headless.jobs.runlog import RunLog

    run_dir = Path(run_dir)
    log = log or RunLog(run_dir)
    if spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    torch.manual_seed(spec.seed)
    images = [Path(p) for p in spec.images]
    task = get_task(spec.task, spec.options, spec.out)
    digest = settings_digest(spec.task, task.key_settings())
    device = _device(spec)
    log.append("start", task=spec.task, images=len(images), shards=spec.shards, device=device,
               total_steps=len(images))
    task.open(device, spec.autocast, images)
    try:
        for index in my_shards(spec.shards):
            if (shard_dir(run_dir, index) / DONE_NAME).is_file():
                continue
            if stop is not None and stop.requested:
                return "stopped"
            from headless.store import atomic_write_json

            atomic_write_json(shard_dir(run_dir, index) / INFO_NAME, task.run_info())
            complete = run_shard(spec, task, run_dir, index, images, digest, stop, log)
            if not complete and stop is not None and stop.requested:
                return "stopped"
    finally:
        task.close()
    if int(os.environ.get("RANK", "0")) == 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        while not all_done(run_dir, spec.shards):  # the other ranks' shards
            if stop is not None and stop.requested:
                return "stopped"
            time.sleep(1.0)
    if all_done(run_dir, spec.shards):
        result = merge_once(run_dir, spec)
        if result is not None:
            log.append("merged", outputs=[str(p) for p in result.outputs],
                       failed=len(result.failures))
    return "completed"


def refresh_array_status(run_dir: str | Path) -> dict[str, Any]:
    """Set the run's ``status.json`` from its shards' (SLURM array tasks write their own).

    running while any task runs; completed once merged; failed when a task failed and none
    runs; else the most telling of the tasks' states (interrupted, cancelled, queued).
    """
    from headless.batch.merge import MANIFEST_NAME
    from headless.jobs.runlog import read_status, write_status
    from headless.jobs.runs import CONFIG_NAME
    from headless.jobs.spec import load_spec

    run_dir = Path(run_dir)
    spec = load_spec(run_dir / CONFIG_NAME)
    states = [read_status(shard_dir(run_dir, i)).get("state", "queued")
              for i in range(spec.shards)]
    done = sum(s == "completed" for s in states)
    if any(s == "running" for s in states):
        state = "running"
    elif done == spec.shards and (run_dir / MANIFEST_NAME).is_file():
        state = "completed"
    elif "failed" in states:
        state = "failed"
    else:
        state = next((s for s in ("cancelled", "interrupted", "queued") if s in states),
                     "running")
    update: dict[str, Any] = {"state": state, "shards_done": done, "shards": spec.shards}
    if state != "running":
        update["ended"] = round(time.time(), 3)
    if state == "failed":
        failed = [i for i, s in enumerate(states) if s == "failed"]
        update["message"] = (f"{len(failed)} shard(s) failed (e.g. shard {failed[0]}: see "
                             f"{shard_dir(run_dir, failed[0])}/worker.log); resume to retry")
    return write_status(run_dir, **update)
