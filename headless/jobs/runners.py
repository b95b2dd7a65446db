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
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headless.jobs.runlog import (
    ACTIVE_STATES,
    LogTail,
    effective_state,
    read_status,
    write_status,
)
from headless.progress import Progress


class RunnerUnavailable(ValueError):
    """This runner cannot run here (no SLURM, no GPU, no torchrun); the message says why."""


@dataclass
class RunHandle:
    """A started run: its folder, and the local process or SLURM job when there is one."""

    run_dir: Path
    runner: str
    process: subprocess.Popen | None = None
    job: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def poll(self) -> str:
        """The run's state now (reaps a finished local process so it is not a zombie)."""
        if self.process is not None:
            self.process.poll()
        return effective_state(read_status(self.run_dir))

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> str:
        """Block until the run ends (or ``timeout`` seconds); returns the state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.ended()
            if state is not None:
                return state
            if deadline is not None and time.monotonic() > deadline:
                return self.poll()
            time.sleep(poll)

    def ended(self) -> str | None:
        """The final state once the run is over (its process gone), else None."""
        state = self.poll()
        if self.process is not None and self.process.returncode is not None:
            state = effective_state(read_status(self.run_dir))
            # a process that exits without writing an end state was killed
            return "dead" if state in ACTIVE_STATES else state
        if self.process is None and state not in ACTIVE_STATES:
            return state
        return None


def _worker_cmd(run_dir: Path, runner: str) -> list[str]:
    return ["-m", "headless.jobs.worker", str(Path(run_dir).resolve()), "--runner", runner]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # the worker must import this very package, wherever the caller imported it from
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _spawn(cmd: list[str], run_dir: Path) -> subprocess.Popen:
    log = open(run_dir / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=_child_env(), cwd=str(run_dir),
        )
    finally:
        log.close()


def _cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def _check_device(spec: Any) -> None:
    device = getattr(spec, "device", "auto")
    if device.startswith("cuda"):
        n = _cuda_count()
        if n == 0:
            raise RunnerUnavailable(
                f"device {device!r} was asked for, but no CUDA GPU is available here "
                "(use device: auto or cpu)"
            )
        if ":" in device and int(device.split(":")[1]) >= n:
            raise RunnerUnavailable(
                f"device {device!r} does not exist: this machine has {n} GPU(s)"
            )


class Runner:
    name = "base"

    def check(self, spec: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def start(self, run_dir: Path, spec: Any) -> RunHandle:  # pragma: no cover - interface
        raise NotImplementedError


class LocalRunner(Runner):
    """One worker process on this machine (its GPU when there is one, else the CPU)."""

    name = "local"

    def check(self, spec: Any) -> None:
        _check_device(spec)

    def start(self, run_dir: Path, spec: Any) -> RunHandle:
        write_status(run_dir, state="queued", runner=self.name, host=socket.gethostname(),
                     cancel_requested=False)
        proc = _spawn([sys.executable, *_worker_cmd(run_dir, self.name)], run_dir)
        write_status(run_dir, pid=proc.pid, pgid=proc.pid)
        return RunHandle(run_dir, self.name, process=proc)


class TorchrunRunner(Runner):
    """DDP on one node: ``torch.distributed.run --standalone --nproc_per_node N``."""

    name = "torchrun"

    def nproc(self, spec: Any) -> int:
        requested = spec.torchrun.nproc_per_node
        if spec.device == "cpu":
            return requested or 1
        return requested or _cuda_count()

    def check(self, spec: Any) -> None:
        if importlib.util.find_spec("torch") is None:
            raise RunnerUnavailable("torchrun needs PyTorch, which is not installed")
        if importlib.util.find_spec("torch.distributed.run") is None:
            raise RunnerUnavailable(
                "torchrun is missing: this PyTorch build has no torch.distributed.run"
            )
        import torch.distributed as dist

        if not dist.is_available():
            raise RunnerUnavailable("torchrun is unusable: this PyTorch build has no distributed")
        if spec.device == "cpu":
            return
        n_gpu = _cuda_count()
        if n_gpu == 0:
            raise RunnerUnavailable(
                "torchrun runs one process per GPU, and no CUDA GPU is available here; use "
                "--runner local, or device: cpu with torchrun.nproc_per_node for CPU processes"
            )
        n = self.nproc(spec)
        if n > n_gpu:
            raise RunnerUnavailable(f"torchrun.nproc_per_node={n} but this node has {n_gpu} GPU(s)")

    def start(self, run_dir: Path, spec: Any) -> RunHandle:
        n = self.nproc(spec)
        write_status(run_dir, state="queued", runner=self.name, host=socket.gethostname(),
                     nproc=n, cancel_requested=False)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={n}", *_worker_cmd(run_dir, self.name)]
        proc = _spawn(cmd, run_dir)
        write_status(run_dir, pid=proc.pid, pgid=proc.pid)
        return RunHandle(run_dir, self.name, process=proc)


class SlurmJob:
    """What submitit pickles and runs on the cluster; ``checkpoint()`` makes it requeueable."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = str(run_dir)

    def __call__(self) -> str:
        import submitit

        from headless.jobs.worker import StopFlag, execute

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(overwrite=True)
        stop = StopFlag()
        # submitit routes USR2 to checkpoint-and-requeue at once; we first let the training
        # loop reach a step boundary and save, then hand the signal back to submitit
        previous = stop.install((signal.SIGUSR2, signal.SIGTERM))
        state = execute(self.run_dir, runner="slurm", stop=stop,
                        extra_status={"slurm_job_id": str(env.job_id)})
        handler = previous.get(signal.SIGUSR2)
        if stop.signum == signal.SIGUSR2 and callable(handler):
            handler(signal.SIGUSR2, None)  # checkpoint() -> requeue -> exit
        return state

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmJob(self.run_dir))


class SlurmRunner(Runner):
    """A SLURM job through submitit, requeued on time-out or pre-emption."""

    name = "slurm"

    def __init__(self, cluster: str | None = None) -> None:
        # cluster="local" runs submitit's local executor: the same pickling, signals and
        # checkpoint path without a cluster (tests)
        self.cluster = cluster

    def check(self, spec: Any) -> None:
        if importlib.util.find_spec("submitit") is None:
            raise RunnerUnavailable(
                "the slurm runner needs submitit, which is not installed: "
                "pip install submitit (or napari-dinoseg[cluster])"
            )
        if self.cluster is None and shutil.which("sbatch") is None:
            raise RunnerUnavailable(
                "SLURM is not available here: sbatch was not found on PATH. Run this from a "
                "cluster login node, or use --runner local"
            )

    def executor(self, run_dir: Path, spec: Any) -> Any:
        import submitit

        cfg = spec.slurm
        executor = submitit.AutoExecutor(
            folder=str(run_dir / "slurm"), cluster=self.cluster,
            slurm_max_num_timeout=cfg.max_requeue,
        )
        params: dict[str, Any] = dict(
            name=f"dinoseg-{run_dir.name}", timeout_min=cfg.time_min, nodes=1,
            tasks_per_node=max(1, cfg.gpus_per_node), cpus_per_task=cfg.cpus_per_task,
        )
        if executor.cluster == "slurm":
            params.update(gpus_per_node=cfg.gpus_per_node, slurm_signal_delay_s=120)
            for key in ("partition", "account", "qos", "constraint"):
                if getattr(cfg, key):
                    params[f"slurm_{key}"] = getattr(cfg, key)
            if cfg.mem_gb:
                params["mem_gb"] = cfg.mem_gb
        executor.update_parameters(**params)
        return executor

    def start(self, run_dir: Path, spec: Any) -> RunHandle:
        write_status(run_dir, state="queued", runner=self.name, cancel_requested=False)
        job = self.executor(run_dir, spec).submit(SlurmJob(str(run_dir)))
        write_status(run_dir, slurm_job_id=str(job.job_id))
        return RunHandle(run_dir, self.name, job=job, info={"slurm_job_id": str(job.job_id)})


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
    """The spec with relative data / weights paths made absolute (the worker runs elsewhere)."""
    base = Path(base or os.getcwd())

    def absolute(value: str | None, only_if_exists: bool = False) -> str | None:
        if not value:
            return value
        p = Path(value).expanduser()
        if p.is_absolute():
            return str(p)
        q = (base / p).resolve()
        if only_if_exists and not q.exists():
            return value  # a keyword such as "imagenet" or "official"
        return str(q)

    data = spec.data.model_copy(update={
        "root": absolute(spec.data.root), "val_root": absolute(spec.data.val_root),
        "boxes": absolute(spec.data.boxes),
    })
    model = spec.model.model_copy(update={
        "weights": absolute(spec.model.weights, only_if_exists=True),
        "resumed_model": absolute(spec.model.resumed_model),
    })
    crop = spec.crop.model_copy(update={
        "attention_weights": absolute(spec.crop.attention_weights, only_if_exists=True),
    })
    return spec.model_copy(update={"data": data, "model": model, "crop": crop})


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
    if preflight:
        get_job(spec.job).preflight(spec)
    run_dir = new_run_dir(spec, runs_root)
    return run.start(run_dir, spec)


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
