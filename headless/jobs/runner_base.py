"""What every runner shares: the :class:`Runner` interface, the started :class:`RunHandle`, and
:class:`RunnerUnavailable`, raised by a runner's up-front check with what is missing.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headless.jobs.runlog import ACTIVE_STATES, effective_state, read_status


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


class Runner:
    """Where a run's worker goes: ``check`` says plainly why not here, ``start`` starts it."""

    name = "base"

    def check(self, spec: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def start(self, run_dir: Path, spec: Any) -> RunHandle:  # pragma: no cover - interface
        raise NotImplementedError
