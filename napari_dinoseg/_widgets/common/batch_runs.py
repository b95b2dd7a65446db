"""What the "Run as job" group does, without Qt: start a batch run, follow it, cancel it.

A dock says what to run as a :class:`JobRequest` (task, images or folders, output, the task's
options, device); the group adds how (:class:`JobSettings`: runner, shards, batch size). Each
step is a progress generator run in a worker thread by :mod:`.workers`: :func:`launch_job` lists
the images, builds the same spec as ``dinoseg <task> ... --runner R`` (the CLI twin,
:mod:`headless.cli._batch`) and starts it through :func:`headless.jobs.runners.launch`;
:func:`follow_job` reports the shards' progress (:func:`headless.batch.follow.batch_progress`)
until the run ends or the group closes, then reads the run's ``manifest.json``. The run lives in
its own process: closing the dock or napari stops the following, never the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNNER_NAMES = ("local", "torchrun", "slurm")


@dataclass
class JobRequest:
    """What a dock asks to run: ``images`` may hold folders (expanded in the worker)."""

    task: str
    images: Sequence[str | Path]
    out: str | Path
    options: dict[str, Any]
    device: str = "auto"

    @classmethod
    def of(cls, value: Any) -> JobRequest:
        """A request from ``build()``'s value: a JobRequest or ``(task, images, out, options,
        device)``."""
        return value if isinstance(value, cls) else cls(*value)


@dataclass
class JobSettings:
    """How the group runs it; ``shards=0`` means one (torchrun: one per process)."""

    runner: str = "local"
    shards: int = 0
    batch_size: int = 8
    num_workers: int = 2
    runs_root: str | Path | None = None


@dataclass
class Started:
    handle: Any
    n_images: int
    n_shards: int
    runners: dict[str, str | None]
    warnings: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return Path(self.handle.run_dir)

    def line(self) -> str:
        return (f"batch run {self.run_dir.name}: {self.n_images} image(s) in "
                f"{self.n_shards} shard(s), runner {self.handle.runner}")


@dataclass
class Finished:
    """How a followed run ended: its state, its manifest (once merged) and a one-line summary."""

    state: str
    manifest: dict[str, Any] | None
    message: str
    run_dir: Path


def image_folder(layer: Any) -> Path:
    """The folder of an image layer's file (``ValueError`` for an image made in memory)."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path:
        raise ValueError(f"'{layer.name}' has no file on disk: open an image of the folder "
                         "(File > Open) to run the job on that folder")
    return Path(path).parent


def runner_check_job(task: str, device: str) -> Generator[Any, None, dict[str, str | None]]:
    """Runner name -> None when it can run this task and device here, else the reason."""
    from headless.jobs.runners import available_runners
    from headless.jobs.spec import build_spec
    from headless.progress import Progress

    yield Progress(0, 1, "checking the job runners")
    return available_runners(build_spec({"job": "batch", "task": task, "device": device}))


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The run's images: files as given, folders expanded, sorted (``ValueError`` if none)."""
    from headless.batch.shards import sorted_images
    from headless.images import ImageError, expand_inputs

    try:
        images = sorted_images(expand_inputs(list(inputs)).images)
    except ImageError as exc:
        raise ValueError(str(exc)) from None
    if not images:
        raise ValueError("no images in " + ", ".join(str(p) for p in inputs))
    return images


def launch_job(req: JobRequest, how: JobSettings,
               prepare: Callable[[dict[str, Any], list[Path], Path], dict[str, Any]] | None = None
               ) -> Generator[Any, None, Started]:
    """List the images, build the batch spec, check the runner and start the run."""
    from headless.jobs.runners import RunnerUnavailable, available_runners, get_runner, launch
    from headless.jobs.spec import build_spec
    from headless.progress import Progress

    yield Progress(0, 3, "listing the images")
    images = list_images(req.images)
    out = Path(req.out)
    n_shards = how.shards or 1
    if not how.shards and how.runner == "torchrun":
        from types import SimpleNamespace

        from headless.jobs.spec import TorchrunConfig

        probe = SimpleNamespace(device=req.device, torchrun=TorchrunConfig())
        n_shards = max(1, get_runner("torchrun").nproc(probe))
    n_shards = min(n_shards, len(images))  # at most one shard per image
    options = dict(req.options)
    if prepare is not None:
        yield Progress(1, 3, "saving the job's inputs")
        options = prepare(options, images, out)
    spec = build_spec({"job": "batch", "name": req.task, "task": req.task,
                       "images": [str(p) for p in images], "out": str(out),
                       "shards": n_shards, "options": options, "device": req.device,
                       "batch_size": how.batch_size, "num_workers": how.num_workers})
    runners = available_runners(spec)
    if runners.get(how.runner):
        exc = RunnerUnavailable(runners[how.runner])
        exc.runners = runners  # the group greys the runners it now knows cannot run
        raise exc
    yield Progress(2, 3, f"checking the images and starting ({how.runner})")
    handle = launch(spec, how.runner, runs_root=how.runs_root)
    return Started(handle, len(images), n_shards, runners,
                   list(handle.info.get("warnings", [])))


def follow_job(started: Started, stop: threading.Event, poll: float = 1.0
               ) -> Generator[Any, None, Finished | None]:
    """The run's progress until it ends (then its :class:`Finished`), or None once ``stop``."""
    from headless.batch.follow import batch_progress
    from headless.progress import Progress

    run_dir = started.run_dir
    while True:
        prog = batch_progress(run_dir, started.n_images, started.n_shards)
        state = started.handle.ended()
        merging = ", merging" if state is None and prog.shards_done == prog.shards else ""
        yield Progress(prog.done, prog.total, progress_line(prog) + merging)
        if state is not None:
            return finished(run_dir, state)
        if stop.wait(poll):
            return None


def progress_line(prog: Any) -> str:
    """A :class:`~headless.batch.follow.BatchProgress` in words; no rate while none is known
    (before the first images, and once every shard is done)."""
    if prog.images_per_s > 0:
        return prog.line()
    return f"{prog.done}/{prog.total} images, {prog.shards_done}/{prog.shards} shard(s) done"


def finished(run_dir: Path, state: str) -> Finished:
    """Read what a run that ended left: the manifest when it completed, else why it stopped."""
    from headless.batch.merge import MANIFEST_NAME
    from headless.jobs.runlog import read_status
    from headless.store import read_json

    manifest = None
    path = run_dir / MANIFEST_NAME
    if state == "completed" and path.is_file():
        try:
            manifest = read_json(path)
        except (OSError, ValueError):
            manifest = None
    if manifest is not None:
        return Finished(state, manifest, outputs_line(manifest), run_dir)
    msg = str(read_status(run_dir).get("message") or "").strip().splitlines()
    why = f": {msg[0]}" if msg else ""
    return Finished(state, None, f"{run_dir.name} ended {state}{why} (resume it from the Train "
                    f"dock or: dinoseg runs resume {run_dir.name})", run_dir)


def outputs_line(manifest: dict[str, Any]) -> str:
    """'merged 3 image(s) (0 failed) -> boxes.json, boxes.json.meta.json'."""
    names = [Path(p).name for p in manifest.get("outputs", [])]
    return (f"merged {manifest.get('merged', 0)} image(s) ({manifest.get('failed', 0)} failed)"
            + (" -> " + ", ".join(names) if names else ""))


def output_folder(manifest: dict[str, Any] | None, out: str | Path) -> Path:
    """The folder to open: the first output's (a file's folder, or the folder itself)."""
    outputs = (manifest or {}).get("outputs") or [str(out)]
    first = Path(outputs[0])
    return first if first.suffix == "" else first.parent


def cancel_job(run_dir: Path) -> Generator[Any, None, str]:
    """Ask the run to stop at the next batch (what it finished stays; resume continues)."""
    from headless.jobs.runs import cancel_run
    from headless.progress import Progress

    yield Progress(0, 1, "cancelling")
    return cancel_run(run_dir)
