"""Runners on this machine: ``local`` (one worker process) and ``torchrun`` (DDP, one process per
GPU), both started in a new session so that closing napari or the shell does not stop them.

The worker is ``python -m headless.jobs.worker RUN_DIR``, its output in the run's ``worker.log``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from headless.jobs.runlog import write_status
from headless.jobs.runner_base import RunHandle, Runner, RunnerUnavailable


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
