"""Run folders: create, find, list, show and cancel training runs.

Every run lives in its own folder under a runs root (``$DINOSEG_RUNS``, default
``~/.dinoseg/runs``)::

    <root>/<YYYYmmdd-HHMMSS>-<job>[-<name>]/
        config.yaml           the resolved spec (defaults + YAML + overrides)
        status.json           state, runner, process / SLURM ids, timestamps
        log.jsonl             progress and metrics, one JSON object per line
        worker.log            the worker's stdout / stderr
        checkpoints/last.pt   resumable state (model, optimizer, EMA, RNG, step)
        metrics.json          final metrics; confusion_matrix.json / .csv
        model_final.safetensors  final weights (+ model_ema_final.safetensors)
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headless.jobs.runlog import (
    STATUS_NAME,
    effective_state,
    read_log,
    read_status,
    write_status,
)

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.json"


class RunError(ValueError):
    """A run that cannot be found or acted on; the message says why."""


def runs_root(root: str | Path | None = None) -> Path:
    """The folder holding run folders: ``root``, else ``$DINOSEG_RUNS``, else ~/.dinoseg/runs."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("DINOSEG_RUNS")
    if env:
        return Path(env).expanduser()
    return Path("~/.dinoseg/runs").expanduser()


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip())
    return keep.strip("-.")[:60]


def new_run_dir(spec: Any, root: str | Path | None = None) -> Path:
    """Create a fresh run folder, save the resolved spec in it and mark it "created"."""
    from headless.jobs.spec import save_spec

    base = runs_root(root).resolve()
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{spec.job}"
    if spec.name:
        name += f"-{_slug(spec.name)}"
    run_dir = base / name
    n = 1
    while True:
        try:
            run_dir.mkdir(parents=False, exist_ok=False)
            break
        except FileExistsError:
            n += 1
            run_dir = base / f"{name}-{n}"
    save_spec(spec, run_dir / CONFIG_NAME)
    write_status(run_dir, state="created", job=spec.job, created=round(time.time(), 3),
                 host=socket.gethostname())
    return run_dir


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file()


def find_run(ref: str | Path, root: str | Path | None = None) -> Path:
    """A run folder from a path, a folder name under the root, a unique prefix, or "last"."""
    p = Path(ref).expanduser()
    if p.is_dir() and is_run_dir(p):
        return p.resolve()
    base = runs_root(root)
    if str(ref) == "last":
        runs = _run_dirs(base)
        if not runs:
            raise RunError(f"no runs in {base}")
        return runs[-1]
    direct = base / str(ref)
    if direct.is_dir() and is_run_dir(direct):
        return direct.resolve()
    matches = [d for d in _run_dirs(base) if d.name.startswith(str(ref))]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(d.name for d in matches[:5])
        raise RunError(f"run {ref!r} is ambiguous in {base}: {names}")
    if p.is_dir():
        raise RunError(f"{p} is not a run folder (no {CONFIG_NAME} in it)")
    raise RunError(f"no run {ref!r} (looked for a folder and in {base})")


def _run_dirs(base: Path) -> list[Path]:
    base = base.resolve()
    if not base.is_dir():
        return []
    dirs = [d for d in base.iterdir() if d.is_dir() and is_run_dir(d)]
    return sorted(dirs, key=lambda d: (read_status(d).get("created", d.stat().st_mtime), d.name))


@dataclass
class RunInfo:
    """A one-line summary of a run, for ``dinoseg runs list`` and the GUI's run chooser."""

    name: str
    path: Path
    state: str
    job: str
    runner: str | None
    step: int
    total_steps: int | None
    acc1: float | None
    created: float | None

    def line(self) -> str:
        prog = f"{self.step}/{self.total_steps}" if self.total_steps else f"{self.step}"
        acc = f"{100 * self.acc1:.2f}%" if self.acc1 is not None else "-"
        return f"{self.name:<44} {self.state:<11} {self.runner or '-':<9} {prog:>11} {acc:>8}"


def run_info(run_dir: Path) -> RunInfo:
    status = read_status(run_dir)
    records = read_log(run_dir)
    step, total, acc1 = 0, None, None
    shards = None
    for rec in records:
        if rec.get("kind") == "start":
            total = rec.get("total_steps", total)
            shards = rec.get("shards", shards)
        if "step" in rec and rec.get("kind") in ("train", "eval", "checkpoint", "resume"):
            step = int(rec["step"])
        if rec.get("kind") == "eval":
            acc1 = rec.get("acc1", acc1)
    metrics = read_metrics(run_dir)
    if metrics:
        acc1 = metrics.get("acc1", acc1)
    if status.get("job") == "batch" and total and shards:  # images done, over every shard
        from headless.batch.follow import batch_progress

        step = batch_progress(run_dir, int(total), int(shards)).done
    return RunInfo(
        name=run_dir.name, path=run_dir, state=effective_state(status),
        job=str(status.get("job", "?")), runner=status.get("runner"), step=step,
        total_steps=total, acc1=acc1, created=status.get("created"),
    )


def list_runs(root: str | Path | None = None) -> list[RunInfo]:
    """Runs under the root, oldest first."""
    return [run_info(d) for d in _run_dirs(runs_root(root))]


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    from headless.store import read_json

    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def show_run(ref: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """Everything worth knowing about a run: status, progress, last eval, final metrics, files."""
    run_dir = find_run(ref, root)
    status = read_status(run_dir)
    info = run_info(run_dir)
    records = read_log(run_dir)
    last_eval = next((r for r in reversed(records) if r.get("kind") == "eval"), None)
    last_train = next((r for r in reversed(records) if r.get("kind") == "train"), None)
    errors = [r.get("message") for r in records if r.get("kind") == "error"]
    ckpt = run_dir / "checkpoints" / "last.pt"
    return {
        "run": run_dir.name,
        "path": str(run_dir),
        "state": info.state,
        "status": status,
        "step": info.step,
        "total_steps": info.total_steps,
        "last_train": last_train,
        "last_eval": last_eval,
        "metrics": read_metrics(run_dir),
        "checkpoint": str(ckpt) if ckpt.is_file() else None,
        "errors": errors,
        "files": sorted(p.name for p in run_dir.iterdir()),
    }


def cancel_run(ref: str | Path, root: str | Path | None = None, force: bool = False) -> str:
    """Ask a run to stop: it checkpoints at the next step boundary and ends "cancelled".

    Local and torchrun runs get SIGTERM (``force``: SIGKILL to the whole process group, no
    checkpoint); SLURM runs are ``scancel``-ed. Returns a sentence saying what was done.
    """
    run_dir = find_run(ref, root)
    status = read_status(run_dir)
    state = effective_state(status)
    if state in ("completed", "failed", "cancelled"):
        return f"{run_dir.name} already ended ({state}); nothing to cancel"
    if state in ("dead", "interrupted") or (state == "created" and not status.get("pid")):
        write_status(run_dir, state="cancelled", ended=round(time.time(), 3),
                     message="cancelled by the user (no process was running)")
        return f"{run_dir.name}: no process was running; marked cancelled"
    write_status(run_dir, cancel_requested=True)
    runner = status.get("runner")
    if runner == "slurm":
        import shutil
        import subprocess

        job_id = status.get("slurm_job_id")
        if not job_id or shutil.which("scancel") is None:
            raise RunError(f"{run_dir.name}: cannot cancel SLURM job {job_id!r}: scancel not found")
        args = ["scancel", str(job_id)] if force else ["scancel", "--signal=TERM", "--full",
                                                       str(job_id)]
        subprocess.run(args, check=False, timeout=30)
        return f"{run_dir.name}: sent {'scancel' if force else 'SIGTERM'} to SLURM job {job_id}"
    pid = status.get("pid")
    if status.get("host") not in (None, socket.gethostname()):
        raise RunError(
            f"{run_dir.name} runs on {status.get('host')}; cancel it from that machine"
        )
    if not pid:
        raise RunError(f"{run_dir.name}: no process id recorded; cannot cancel")
    try:
        if force:
            os.killpg(int(status.get("pgid") or pid), signal.SIGKILL)
        else:
            os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        write_status(run_dir, state="cancelled", ended=round(time.time(), 3))
        return f"{run_dir.name}: process {pid} had already exited; marked cancelled"
    if force:
        write_status(run_dir, state="cancelled", ended=round(time.time(), 3),
                     message="killed by the user")
        return f"{run_dir.name}: killed process group {status.get('pgid') or pid}"
    return f"{run_dir.name}: asked process {pid} to stop (it saves a checkpoint first)"


def status_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / STATUS_NAME
