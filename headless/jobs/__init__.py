"""Headless jobs: a validated spec, a run folder, a runner that starts a worker process.

Training never runs inside napari's process. A front end (napari's Train panel, ``dinoseg
train``) builds a spec (:mod:`headless.jobs.spec`), checks it up front (data, runner), creates a
run folder (:mod:`headless.jobs.runs`) and starts a runner (:mod:`headless.jobs.runners`: a local
process, SLURM via submitit, or torchrun). The worker (:mod:`headless.jobs.worker`) appends
progress to the run's JSON-lines log (:mod:`headless.jobs.runlog`), which the front ends tail.

A job type is two functions, found by name so that nothing heavy is imported before it runs:
``preflight(spec)`` raises a clear error before anything starts; ``run(spec, run_dir, stop,
log)`` does the work and returns "completed" or "stopped" (checkpoint saved, resumable).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    """Where a job type's functions live (``module:function``)."""

    name: str
    preflight_ref: str
    run_ref: str

    @staticmethod
    def _resolve(ref: str) -> Any:
        module, func = ref.split(":")
        return getattr(importlib.import_module(module), func)

    def preflight(self, spec: Any) -> Any:
        """Raise a clear error for anything that would stop the job; return a summary."""
        return self._resolve(self.preflight_ref)(spec)

    def run(self, spec: Any, run_dir: Any, stop: Any, log: Any) -> str:
        return self._resolve(self.run_ref)(spec, run_dir, stop=stop, log=log)


JOBS: dict[str, Job] = {
    "classifier": Job(
        "classifier", "headless.train.classifier.job:preflight",
        "headless.train.classifier.job:run",
    ),
    "batch": Job("batch", "headless.batch.job:preflight", "headless.batch.job:run"),
    "dino": Job("dino", "headless.train.ssl.job:preflight", "headless.train.ssl.job:run"),
    "fgvc": Job("fgvc", "headless.train.fgvc.job:preflight", "headless.train.fgvc.job:run"),
}


def get_job(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise ValueError(f"unknown job type {name!r}; known: {', '.join(sorted(JOBS))}") from None
