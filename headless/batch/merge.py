"""Merge a batch run's shard records into the command's outputs, plus a manifest.

The merge takes, for each image of the run (in the run's sorted order), the record whose key
matches the image's current key, and hands them to the task, which writes the same files the
interactive command writes. ``manifest.json`` in the run folder says what was merged: counts,
failures by image, shard record files, and the outputs. Merging twice gives the same files;
``merge_once`` lets only one of several finishing processes do it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headless.batch.records import INFO_NAME, RECORDS_NAME, read_records, shard_dir
from headless.batch.shards import image_key, settings_digest

MANIFEST_NAME = "manifest.json"
LOCK_NAME = "merge.lock"


class MergeError(ValueError):
    """The run cannot be merged yet (images not finished); the message says how many."""


@dataclass
class MergeResult:
    outputs: list[Path]
    n_images: int
    n_done: int
    failures: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def collect(run_dir: str | Path, spec: Any, task: Any
            ) -> tuple[list[Path], list[dict[str, Any] | None]]:
    """The run's images and, for each, its current record (None: not finished)."""
    run_dir = Path(run_dir)
    digest = settings_digest(spec.task, task.key_settings())
    images = [Path(p) for p in spec.images]
    wanted = {image_key(p, digest): i for i, p in enumerate(images)}
    found: list[dict[str, Any] | None] = [None] * len(images)
    for index in range(spec.shards):
        for rec in read_records(shard_dir(run_dir, index) / RECORDS_NAME):
            i = wanted.get(rec["key"])
            if i is not None:
                found[i] = rec
    return images, found


def run_info(run_dir: Path, n_shards: int) -> dict[str, Any]:
    """The task's ``run_info`` as a worker saved it (the first shard that has one)."""
    from headless.store import read_json

    for index in range(n_shards):
        path = shard_dir(run_dir, index) / INFO_NAME
        if path.is_file():
            try:
                info = read_json(path)
            except (OSError, ValueError):
                continue
            if isinstance(info, dict):
                return info
    return {}


def merge_run(run_dir: str | Path, spec: Any = None, partial: bool = False) -> MergeResult:
    """Write the merged outputs of a run; ``partial`` merges what is finished so far."""
    from headless.batch.tasks import get_task
    from headless.jobs.runs import CONFIG_NAME
    from headless.jobs.spec import load_spec
    from headless.store import atomic_write_json

    run_dir = Path(run_dir)
    spec = spec or load_spec(run_dir / CONFIG_NAME)
    task = get_task(spec.task, spec.options, spec.out)
    images, found = collect(run_dir, spec, task)
    missing = [str(p) for p, rec in zip(images, found) if rec is None]
    if missing and not partial:
        raise MergeError(f"{len(missing)} of {len(images)} image(s) are not finished (e.g. "
                         f"{missing[0]}); resume the run, or merge with --partial")
    done = [(p, rec) for p, rec in zip(images, found) if rec is not None]
    task.info = run_info(run_dir, spec.shards)
    outputs = task.merge([rec for _, rec in done], [p for p, _ in done])
    failures = {rec.get("name", p.name): str(rec["error"]) for p, rec in done
                if rec.get("error")}
    result = MergeResult(list(outputs), len(images), len(done), failures, missing)
    atomic_write_json(run_dir / MANIFEST_NAME, {
        "task": spec.task, "images": len(images), "merged": len(done),
        "failed": len(failures), "missing": len(missing), "shards": spec.shards,
        "outputs": [str(p) for p in outputs], "failures": failures,
        "missing_examples": missing[:20], "time": round(time.time(), 3),
    })
    return result


def merge_once(run_dir: str | Path, spec: Any) -> MergeResult | None:
    """Merge unless another process is merging right now (finishing array tasks may meet)."""
    lock = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        return merge_run(run_dir, spec)
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)
