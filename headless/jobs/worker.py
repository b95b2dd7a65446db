"""The process that runs a job: ``python -m headless.jobs.worker RUN_DIR``.

It reads the resolved spec from the run folder, continues from ``checkpoints/last.pt`` when
there is one, and runs the job. SIGTERM / SIGINT (and SIGUSR2 from SLURM before a time limit)
do not kill it mid-step: they set a flag that the training loop reads at the next step boundary,
where it saves a checkpoint and returns; the run then ends "cancelled" (the user asked) or
"interrupted" (anything else), and ``dinoseg runs resume`` continues it exactly.
Under torchrun every rank runs this module; only rank 0 writes the status and the log.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any


class StopFlag:
    """Set from a signal handler, read by the training loop between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        self.signum = signum

    def install(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> dict[int, Any]:
        """Route ``signals`` to this flag; returns the previous handlers."""
        previous = {}
        for sig in signals:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self.request)
        return previous


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def execute(
    run_dir: str | Path,
    runner: str = "local",
    stop: StopFlag | None = None,
    extra_status: dict[str, Any] | None = None,
    shard: int | None = None,
) -> str:
    """Run the job of ``run_dir`` in this process; returns the final state.

    ``shard`` (a SLURM array task of a batch run) keeps this process's status and log in the
    shard's folder, since many tasks run at once; the run's own status is derived from them.

    Never raises for a job failure: the error goes to the log, ``status.json`` (state "failed")
    and stderr (the traceback, in ``worker.log``), and the state is returned.
    """
    from headless.jobs import get_job
    from headless.jobs.runlog import RunLog, read_status, write_status
    from headless.jobs.runs import CONFIG_NAME
    from headless.jobs.spec import load_spec

    run_dir = Path(run_dir).resolve()
    stop = stop or StopFlag()
    is_main = _rank() == 0
    scope = run_dir
    if shard is not None:
        from headless.batch.job import SHARD_ENV
        from headless.batch.records import shard_dir

        os.environ[SHARD_ENV] = str(shard)
        scope = shard_dir(run_dir, shard)
        scope.mkdir(parents=True, exist_ok=True)
    log = RunLog(scope, enabled=is_main)
    status_update = dict(
        state="running", runner=runner, worker_pid=os.getpid(), host=socket.gethostname(),
        started=round(time.time(), 3), ended=None, message=None, cancel_requested=False,
        **(extra_status or {}),
    )
    if runner == "local" or "pid" not in read_status(scope):
        status_update["pid"] = os.getpid()
    if is_main:
        write_status(scope, **status_update)
    if shard is not None:
        _refresh_array(run_dir)
    try:
        spec = load_spec(run_dir / CONFIG_NAME)
        job = get_job(spec.job)
        result = job.run(spec, run_dir, stop=stop, log=log)
    except Exception as exc:  # a failed job must leave a readable record, not just a traceback
        message = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        log.append("error", message=message)
        log.append("end", state="failed")
        if is_main:
            write_status(scope, state="failed", ended=round(time.time(), 3), message=message)
        if shard is not None:
            _refresh_array(run_dir)
        return "failed"
    if result == "stopped":
        cancel = bool(read_status(run_dir).get("cancel_requested")
                      or read_status(scope).get("cancel_requested"))
        requeue = stop.signum == getattr(signal, "SIGUSR2", None)
        state = "cancelled" if cancel else ("queued" if requeue else "interrupted")
        message = {
            "cancelled": "cancelled by the user; resumable from the last checkpoint",
            "queued": "stopped before the SLURM time limit; requeued",
            "interrupted": f"stopped by signal {stop.signum}; resumable from the last checkpoint",
        }[state]
        log.append("end", state=state, message=message)
        if is_main:
            write_status(scope, state=state, ended=round(time.time(), 3), message=message)
        if shard is not None:
            _refresh_array(run_dir)
        return state
    log.append("end", state="completed")
    if is_main:
        write_status(scope, state="completed", ended=round(time.time(), 3))
    if shard is not None:
        _refresh_array(run_dir)
    return "completed"


def _refresh_array(run_dir: Path) -> None:
    """The run's status from its array tasks' statuses (a batch run on SLURM)."""
    from headless.batch.job import refresh_array_status

    try:
        refresh_array_status(run_dir)
    except Exception:  # never let a status summary break a task's own end
        traceback.print_exc()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headless.jobs.worker")
    parser.add_argument("run_dir", help="run folder holding config.yaml")
    parser.add_argument("--runner", default="local", choices=["local", "torchrun", "slurm"])
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        print(f"worker: {run_dir} is not a run folder (no config.yaml)", file=sys.stderr)
        return 2
    stop = StopFlag()
    stop.install()
    state = execute(run_dir, runner=args.runner, stop=stop)
    return {"completed": 0, "cancelled": 0, "interrupted": 3, "queued": 3}.get(state, 1)


if __name__ == "__main__":
    sys.exit(main())
