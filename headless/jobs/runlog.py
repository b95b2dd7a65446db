"""A run folder's log and status files: how a worker talks to whoever watches it.

The worker appends one JSON object per line to ``log.jsonl`` (progress, metrics, checkpoints,
errors), as DINOv2's training logs do; napari and ``dinoseg runs show`` tail that file. A line is
written whole with a single ``write`` on a file opened in append mode, and readers only consume
complete lines, so a reader never sees half a record. ``status.json`` holds the run's state and
process ids, replaced atomically on each change.

Record kinds (field ``kind``): ``start`` (total_steps, steps_per_epoch, classes), ``train``
(step, epoch, loss, acc1, lr, images_per_s), ``eval`` (step, epoch, acc1, acc5, loss, ema_*),
``checkpoint`` (step, path), ``resume`` (step), ``stage`` (work before training: stage, done,
total), ``message`` (text), ``error`` (message), ``end`` (state). Steps count optimizer updates;
``step`` in a record is the number of updates done.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_NAME = "log.jsonl"
STATUS_NAME = "status.json"

#: states a run can be in; "dead" is never written, it is what a reader concludes when a
#: "running" run's process has vanished (killed, machine rebooted).
STATES = ("created", "queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("created", "queued", "running")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None  # NaN / inf are not JSON
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _jsonable(value.item())
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class RunLog:
    """Append-only JSON-lines writer for one run folder."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / LOG_NAME
        self.enabled = enabled  # False on DDP ranks other than 0

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"kind": kind, "time": round(time.time(), 3), **_jsonable(fields)}
        if self.enabled:
            line = json.dumps(record, allow_nan=False) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
        return record


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """All complete records of a run's log (a torn last line is ignored)."""
    tail = LogTail(Path(run_dir) / LOG_NAME)
    return tail.read_new()


class LogTail:
    """Follows a growing JSON-lines file: each :meth:`read_new` returns the records added since.

    Keeps a byte offset and holds back an unfinished last line until its newline arrives. If
    the file shrinks or is replaced, it starts again from the top (``reset`` tells the caller).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self._inode: int | None = None
        self.reset = False

    def read_new(self) -> list[dict[str, Any]]:
        self.reset = False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if st.st_size < self.offset or (self._inode is not None and st.st_ino != self._inode):
            self.offset = 0
            self.reset = True
        self._inode = st.st_ino
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        records = []
        for line in data[: end + 1].splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a corrupt line (disk full...) must not stop the reader
            if isinstance(rec, dict):
                records.append(rec)
        return records


@dataclass
class Curves:
    """Training curves assembled from log records, as a plot wants them.

    A resumed run re-does the steps after its last checkpoint; when a ``resume`` record arrives,
    points past the resumed step are dropped so each step appears once.
    """

    train_step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_acc1: list[float] = field(default_factory=list)
    eval_acc5: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    total_steps: int | None = None
    step: int = 0
    state: str | None = None
    last_eval: dict[str, Any] | None = None
    messages: list[str] = field(default_factory=list)
    stage: dict[str, Any] | None = None  # e.g. attention maps being computed before training

    def add(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            kind = rec.get("kind")
            if kind == "start":
                self.total_steps = rec.get("total_steps", self.total_steps)
                self.stage = None
            elif kind == "stage":
                self.stage = rec
            elif kind == "resume":
                self._truncate(int(rec.get("step", 0)))
            elif kind == "train":
                self.step = int(rec.get("step", self.step))
                self.train_step.append(self.step)
                self.train_loss.append(_num(rec.get("loss")))
                self.train_acc.append(_num(rec.get("acc1")))
            elif kind == "eval":
                self.eval_step.append(int(rec.get("step", self.step)))
                self.eval_acc1.append(_num(rec.get("acc1")))
                self.eval_acc5.append(_num(rec.get("acc5")))
                self.eval_loss.append(_num(rec.get("loss")))
                self.last_eval = rec
            elif kind == "end":
                self.state = rec.get("state")
            elif kind in ("error", "message"):
                self.messages.append(str(rec.get("message", "")))

    def _truncate(self, step: int) -> None:
        self.step = step
        keep = [i for i, s in enumerate(self.train_step) if s <= step]
        self.train_step = [self.train_step[i] for i in keep]
        self.train_loss = [self.train_loss[i] for i in keep]
        self.train_acc = [self.train_acc[i] for i in keep]
        keep = [i for i, s in enumerate(self.eval_step) if s <= step]
        self.eval_step = [self.eval_step[i] for i in keep]
        self.eval_acc1 = [self.eval_acc1[i] for i in keep]
        self.eval_acc5 = [self.eval_acc5[i] for i in keep]
        self.eval_loss = [self.eval_loss[i] for i in keep]
        self.state = None


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


# ----------------------------------------------------------------------------------------------
# status


def read_status(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / STATUS_NAME
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_status(run_dir: str | Path, **updates: Any) -> dict[str, Any]:
    """Merge ``updates`` into ``status.json`` (atomic replace) and return the new status."""
    from headless.store import atomic_write_json

    status = read_status(run_dir)
    status.update(_jsonable(updates))
    status["updated"] = round(time.time(), 3)
    atomic_write_json(Path(run_dir) / STATUS_NAME, status)
    return status


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (and is not a zombie) on this machine."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open(f"/proc/{int(pid)}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def effective_state(status: dict[str, Any]) -> str:
    """The state a reader should believe: "dead" when a local run's process has vanished."""
    state = status.get("state", "unknown")
    if state in ("running", "queued") and status.get("runner") in ("local", "torchrun"):
        if status.get("host") == socket.gethostname() and not pid_alive(status.get("pid")):
            return "dead"
    if state in ("running", "queued") and status.get("runner") == "slurm":
        job_state = slurm_job_state(status.get("slurm_job_id"))
        if job_state is not None and job_state not in (
            "PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
            "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT",
        ):
            return "dead"
    return state


def slurm_job_state(job_id: str | None) -> str | None:
    """SLURM's state for a job (``squeue``), or None when it cannot be asked."""
    import shutil
    import subprocess

    if not job_id or shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%T"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip().splitlines()
    if out.returncode != 0 or not text:
        return "GONE"  # squeue forgets finished jobs
    return text[0].strip()
