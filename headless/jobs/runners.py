"""Runners: start a run folder's worker somewhere other than the caller's process.

``local``     ``python -m headless.jobs.worker RUN_DIR`` in a new session (closing napari or the
              shell does not stop it), output in ``worker.log``.
``torchrun``  the same worker under ``python -m torch.distributed.run --standalone``, one
              process per GPU of this node (DDP); on CPU with ``device: cpu`` and
              ``torchrun.nproc_per_node``, gloo processes.
``slurm``     a submitit job whose ``checkpoint()`` requeues it: SLURM's USR2 before the time
              limit makes the loop save a checkpoint at the next step, then submitit requeues
              and the new job resumes from it.

Every runner checks up front that it can run here and says plainly what is missing.

The runners live in :mod:`.local_runners` (local, torchrun) and :mod:`.slurm_runner` on the
interface of :mod:`.runner_base`; this module picks one by name, launches, resumes and follows
runs, and re-exports the runner classes (``from headless.jobs.runners import SlurmRunner``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from headless.jobs.local_runners import LocalRunner, TorchrunRunner
from headless.jobs.runlog import ACTIVE_STATES, LogTail, effective_state, read_status
from headless.jobs.runner_base import RunHandle, Runner, RunnerUnavailable
from headless.jobs.slurm_runner import SlurmJob, SlurmRunner
from headless.progress import Progress

__all__ = [
    "RUNNERS",
    "LocalRunner",
    "RunHandle",
    "Runner",
    "RunnerUnavailable",
    "SlurmJob",
    "SlurmRunner",
    "TorchrunRunner",
    "available_runners",
    "follow",
    "get_runner",
    "launch",
    "resolve_spec_paths",
    "resume",
]


RUNNERS: dict[str, Callable[[], Runner]] = {
    "local": LocalRunner,
    "torchrun": TorchrunRunner,
    "slurm": SlurmRunner,
}


def get_runner(name: str | Runner) -> Runner:
    if isinstance(name, Runner):
        return name
    try:
        return RUNNERS[name]()
    except KeyError:
        raise RunnerUnavailable(
            f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}"
        ) from None


def available_runners(spec: Any) -> dict[str, str | None]:
    """Runner name -> None when it can run ``spec`` here, else the reason it cannot."""
    out: dict[str, str | None] = {}
    for name in RUNNERS:
        try:
            get_runner(name).check(spec)
            out[name] = None
        except RunnerUnavailable as exc:
            out[name] = str(exc)
    return out


def resolve_spec_paths(spec: Any, base: str | Path | None = None) -> Any:
    """The spec with relative paths made absolute (the worker runs elsewhere).

    Which fields are paths is said by the spec models themselves (``PATH`` /
    ``PATH_OR_KEYWORD`` markers in :mod:`headless.jobs.spec`), in any nested section, so every
    job type gets this without the runners knowing its fields.
    """
    from pydantic import BaseModel

    base = Path(base or os.getcwd())

    def absolute(value: Any, only_if_exists: bool) -> Any:
        if isinstance(value, list):  # a list of paths (a batch run's images)
            return [absolute(v, only_if_exists) for v in value]
        if not value or not isinstance(value, str):
            return value
        p = Path(value).expanduser()
        if p.is_absolute():
            return str(p)
        q = (base / p).resolve()
        if only_if_exists and not q.exists():
            return value  # a keyword such as "imagenet" or "official"
        return str(q)

    def resolve(model: BaseModel) -> BaseModel:
        update: dict[str, Any] = {}
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            how = extra.get("path")
            if how:
                update[name] = absolute(value, only_if_exists=how == "if_exists")
            elif isinstance(value, BaseModel):
                update[name] = resolve(value)
        return model.model_copy(update=update)

    return resolve(spec)


def launch(
    spec: Any,
    runner: str | Runner = "local",
    runs_root: str | Path | None = None,
    preflight: bool = True,
) -> RunHandle:
    """Check everything, create the run folder, start the worker. Errors come before any start."""
    from headless.jobs import get_job
    from headless.jobs.runs import new_run_dir

    run = get_runner(runner)
    spec = resolve_spec_paths(spec)
    run.check(spec)
    summary = (get_job(spec.job).preflight(spec) or {}) if preflight else {}
    run_dir = new_run_dir(spec, runs_root)
    handle = run.start(run_dir, spec)
    handle.info["warnings"] = list(summary.get("warnings", []))
    return handle


def resume(
    ref: str | Path, runner: str | Runner | None = None, runs_root: str | Path | None = None
) -> RunHandle:
    """Start a stopped, interrupted or killed run again; it continues from its last checkpoint."""
    from headless.jobs.runs import CONFIG_NAME, RunError, find_run
    from headless.jobs.spec import load_spec

    run_dir = find_run(ref, runs_root)
    status = read_status(run_dir)
    state = effective_state(status)
    if state == "completed":
        raise RunError(f"{run_dir.name} has completed; nothing to resume")
    if state in ("running", "queued"):
        raise RunError(f"{run_dir.name} is still {state}; cancel it first")
    spec = load_spec(run_dir / CONFIG_NAME)
    run = get_runner(runner or status.get("runner") or "local")
    run.check(spec)
    return run.start(run_dir, spec)


def follow(
    run_dir: str | Path, handle: RunHandle | None = None, poll: float = 0.5
) -> Generator[Progress, None, str]:
    """Progress of a run from its log until it ends; returns the final state (CLI ``--wait``)."""
    tail = LogTail(Path(run_dir) / "log.jsonl")
    total, done, message = 0, 0, ""
    while True:
        for rec in tail.read_new():
            kind = rec.get("kind")
            if kind == "start":
                total = int(rec.get("total_steps") or 0)
            elif kind in ("train", "checkpoint", "resume"):
                done = int(rec.get("step", done))
                if kind == "train":
                    message = f"loss {rec.get('loss', float('nan')):.4f}"
            elif kind == "eval":
                message = f"val acc {100 * (rec.get('acc1') or 0):.1f}%"
            elif kind in ("message", "error"):
                message = str(rec.get("message", ""))
            yield Progress(done, total, message)
        state = handle.ended() if handle is not None else effective_state(read_status(run_dir))
        if handle is None and state in ACTIVE_STATES:
            state = None
        if state is not None:
            for rec in tail.read_new():
                if rec.get("kind") in ("train", "checkpoint"):
                    done = int(rec.get("step", done))
            yield Progress(done, total, state)
            return state
        time.sleep(poll)
