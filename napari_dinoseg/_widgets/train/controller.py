"""What the Train dock holds, without Qt or napari: the form as plain values, the followed run.

:class:`TrainForm` is the classifier's fields as plain values (the fgvc and dino jobs' forms are
in :mod:`.job_forms`) and :func:`spec_dict` turns any of them into the spec dictionary
``dinoseg train`` reads from YAML, so the panel and the CLI build the same spec.
:class:`TrainController` follows one run folder: it tails ``log.jsonl``, keeps the curves
and the run's state, and words the status line; the panel only draws what it says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headless.jobs.runlog import ACTIVE_STATES
from napari_dinoseg._widgets.train.job_forms import JOB_WORDS, knn_points, run_job

RESNET_MODELS = ("resnet50", "resnet18", "resnet34", "resnet101", "test_resnet_tiny")
VIT_MODELS = ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vits14_reg",
              "dinov2_vitb14_reg", "test_dinov2_tiny14_reg")
WEIGHT_CHOICES = ("", "random", "imagenet", "official")
CROPS = (("RandomResizedCrop", "random_resized"),
         ("LocalizedRandomResizedCrop (boxes)", "localized"),
         ("AttentionDensityCrop (DINO maps)", "attention"))
RUNNERS = ("local", "slurm", "torchrun")
DEVICES = ("auto", "cpu", "cuda")
# ACTIVE_STATES (from the run log): a run may still change; Cancel is offered, Launch refused
#: states from which Resume continues from the last checkpoint
RESUMABLE_STATES = ("cancelled", "interrupted", "dead", "failed")
SLURM_POLL_EVERY = 20  # ask squeue every 20 polls (~10 s at 500 ms), not every poll


@dataclass
class TrainForm:
    """The Train form's fields as plain values (text fields as typed, not yet stripped)."""

    data_root: str = ""
    boxes: str = ""
    image_size: int = 224
    batch_size: int = 32
    val_fraction: float = 0.2
    num_workers: int = 4
    job: str = "classifier"
    model: str = RESNET_MODELS[0]
    weights: str = ""
    freeze_backbone: bool = False
    train_cls: bool = False
    crop: str = "random_resized"
    crop_thr: float = 1.0
    temperature: float = 1.0
    optimizer: str = "sgd"
    lr: float = 0.1
    scheduler: str = "cosine"
    target_lr: float = 0.0
    num_epochs: int = 10
    label_smoothing: float = 0.1
    ema_step: int = 0
    augment: bool = True
    augment_p: float = 0.5
    augmix: bool = False
    seed: int = 0
    log_interval: int = 10
    device: str = "auto"
    name: str = ""


def spec_dict(form: Any) -> dict[str, Any]:
    """The form as a spec dictionary (what ``dinoseg train`` reads from YAML).

    Empty text means "not given" (``None``): weights (the model's default), boxes, run name;
    a target learning rate of 0 means none. The fgvc / dino forms say their own
    (:mod:`.job_forms`).
    """
    if not isinstance(form, TrainForm):
        return form.spec_dict()
    return {
        "job": form.job,
        "name": form.name.strip() or None,
        "seed": form.seed,
        "device": form.device,
        "num_epochs": form.num_epochs,
        "data": {
            "root": form.data_root.strip(),
            "boxes": form.boxes.strip() or None,
            "image_size": form.image_size,
            "batch_size": form.batch_size,
            "val_fraction": form.val_fraction,
            "num_workers": form.num_workers,
        },
        "crop": {"type": form.crop, "thr": form.crop_thr, "temperature": form.temperature},
        "augment": {"enabled": form.augment, "p": form.augment_p, "augmix": form.augmix},
        "model": {"type": form.model, "weights": form.weights.strip() or None,
                  "freeze_backbone": form.freeze_backbone, "train_cls": form.train_cls,
                  "ema_step": form.ema_step},
        "opt": {"type": form.optimizer, "lr": form.lr, "scheduler": form.scheduler,
                "target_lr": form.target_lr if form.target_lr > 0 else None,
                "label_smoothing": form.label_smoothing},
        "log": {"interval": form.log_interval},
    }


#: spec fields (what the engine and the CLI's YAML call them) -> the dock's field labels
FORM_WORDS = {
    "data.root": "'dataset folder'", "data.boxes": "'boxes file'",
    "data.image_size": "'image size'", "data.batch_size": "'batch size'",
    "data.val_fraction": "'validation share'", "data.num_workers": "'loader workers'",
    "model.weights": "'weights'", "model.type": "'model'", "opt.lr": "'learning rate'",
    "opt.target_lr": "'target lr'", "opt.label_smoothing": "'label smoothing'",
    "crop.thr": "'crop thr'", "crop.temperature": "'attention T'", "num_epochs": "'epochs'",
    "model.ema_step": "'EMA every k steps'", "log.interval": "'log every (steps)'",
    **JOB_WORDS,
}


def form_words(message: str) -> str:
    """An engine message with spec field names replaced by the labels the dock shows."""
    import re

    for field, label in FORM_WORDS.items():
        message = re.sub(rf"(?<![\w./\\]){re.escape(field)}(?![\w/\\])", label, message)
    return message


def in_form_words(exc: BaseException) -> BaseException:
    """``exc`` again, its message in the dock's words (same type where it can be rebuilt)."""
    text = form_words(str(exc))
    if text == str(exc):
        return exc
    try:
        new = type(exc)(text)
    except Exception:  # noqa: BLE001 - an exception type with another signature
        new = ValueError(text)
    new.__cause__ = exc
    return new


def one_line(exc: BaseException | str) -> str:
    """A message on one line (the dock's status line): whitespace runs, newlines included,
    become one space."""
    return " ".join(str(exc).split())


def build_spec(form: Any) -> Any:
    """The validated job spec of the form (``ValueError`` names what is wrong, in the form's
    words: 'dataset folder', not ``data.root``)."""
    from headless.jobs.spec import build_spec as build

    problem = form.problems() if hasattr(form, "problems") else None
    if problem:
        raise ValueError(problem)
    try:
        return build(spec_dict(form))
    except ValueError as exc:
        raise in_form_words(exc) from exc


def runs_root(text: str) -> Path:
    """The runs folder: the one typed, else ``$DINOSEG_RUNS`` or ``~/.dinoseg/runs``."""
    from headless.jobs.runs import runs_root as root

    return root(text.strip() or None)


def launch_job(spec: Any, runner: str, root: Path) -> Any:
    """A progress generator that checks everything and starts the run; returns its handle."""
    from headless.jobs.runners import launch
    from headless.progress import Progress

    yield Progress(0, 1, "checking data, boxes, weights and runner")
    try:
        return launch(spec, runner=runner, runs_root=root)
    except Exception as exc:
        raise in_form_words(exc) from exc


def runner_note(name: str) -> str:
    """What the panel says under the runner choice ('' when there is nothing to say)."""
    if name == "slurm":
        from headless.jobs.runners import RunnerUnavailable, SlurmRunner

        try:
            SlurmRunner().check(None)
        except RunnerUnavailable as exc:
            return str(exc)
        return ""
    if name == "torchrun":
        return "one process per GPU of this machine (checked at launch)"
    return ""


def confusion_cells(matrix: Sequence[Sequence[int]]) -> list[list[tuple[str, bool, int]]]:
    """``(text, on the diagonal, alpha)`` per cell: row-normalised shading, empty cells clear."""
    cells = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        cells.append([(str(value), i == j, int(30 + 200 * (value / total)) if value else 0)
                      for j, value in enumerate(row)])
    return cells


def confusion_title(data: dict[str, Any]) -> str:
    """The caption above the confusion matrix: its step and, when known, acc@1."""
    import math

    acc = data.get("acc1")
    acc_text = f", acc@1 {100 * acc:.1f}%" if isinstance(acc, float) and math.isfinite(acc) \
        else ""
    return (f"confusion matrix at step {data.get('step')} (rows: true, columns: predicted"
            f"{acc_text})")


class TrainController:
    """The run the dock shows: its folder, handle (when started here), log tail and curves."""

    def __init__(self) -> None:
        self.handle: Any = None  # RunHandle of a run started here (owns the process)
        self.run_dir: Path | None = None  # the run shown in the panel
        self.tail: Any = None
        self.curves: Any = None
        self.state = ""
        self.ticks = 0
        self.batch: tuple[int, int] | None = None  # (images, shards) of a batch run
        self.batch_progress: Any = None  # its BatchProgress at the last poll
        self.merged = ""  # a finished batch run's manifest, in one line
        self.job: str | None = None  # the followed run's job type (its config.yaml)
        self.knn: list[tuple[int, float]] = []  # a dino run's k-NN top-1 (step, share)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def busy_message(self) -> str | None:
        """Why a new launch is refused now (the shown run is still going), or None."""
        if self.run_dir is not None and self.active:
            return f"{self.run_dir.name} is still {self.state}; cancel it or wait"
        return None

    def can_cancel(self) -> bool:
        return self.run_dir is not None and self.active

    def can_resume(self) -> bool:
        return self.run_dir is not None and self.state in RESUMABLE_STATES

    def follow(self, run_dir: str | Path) -> None:
        """Show ``run_dir`` from the start of its log (a run started here or elsewhere)."""
        from headless.jobs.runlog import Curves, LogTail

        self.run_dir = Path(run_dir)
        if self.handle is not None and Path(self.handle.run_dir) != self.run_dir:
            self.handle = None
        self.tail = LogTail(self.run_dir / "log.jsonl")
        self.curves = Curves()
        self.state = ""
        self.ticks = 0
        from napari_dinoseg._widgets.train.batch_run import batch_shape

        self.batch, self.batch_progress, self.merged = batch_shape(self.run_dir), None, ""
        self.job, self.knn = run_job(self.run_dir), []

    def poll(self) -> list[dict[str, Any]] | None:
        """Read new log lines into the curves and refresh the state; the new records.

        None when no run is followed. SLURM's state comes from squeue, asked every
        :data:`SLURM_POLL_EVERY` polls (and when the run logs its end), not every poll.
        """
        from headless.jobs.runlog import Curves, effective_state, read_status

        if self.run_dir is None or self.tail is None:
            return None
        records = self.tail.read_new()
        if self.tail.reset:
            self.curves, self.knn = Curves(), []
        self.curves.add(records)
        self._add_knn(records)
        if self.handle is not None and self.handle.process is not None:
            self.handle.process.poll()  # reap the child when it ends
        status = read_status(self.run_dir)
        self.ticks += 1
        if status.get("runner") != "slurm" or self.ticks % SLURM_POLL_EVERY == 1 or any(
                r.get("kind") == "end" for r in records):
            self.state = effective_state(status)
        else:
            self.state = status.get("state", self.state)
        if self.batch is not None:
            from napari_dinoseg._widgets.train.batch_run import batch_now, merged_line

            self.batch_progress = batch_now(self.run_dir, self.batch)
            if self.state == "completed" and not self.merged:
                self.merged = merged_line(self.run_dir)
        return records

    def _add_knn(self, records: list[dict[str, Any]]) -> None:
        for rec in records:  # a resumed run re-does the steps after its checkpoint
            if rec.get("kind") == "resume":
                self.knn = [p for p in self.knn if p[0] <= int(rec.get("step", 0))]
            else:
                self.knn += knn_points([rec])

    def progress(self) -> tuple[int, int] | None:
        """``(maximum, value)`` of the progress bar, or None to leave it as it is."""
        if self.batch_progress is not None:  # a batch run: images done of all
            return max(self.batch_progress.total, 1), self.batch_progress.done
        c = self.curves
        total = c.total_steps or 0
        if total:
            return total, min(c.step, total)
        if c.stage and c.stage.get("total"):
            return int(c.stage["total"]), int(c.stage.get("done", 0))
        return None

    def status_text(self) -> str:
        """The one-line summary: run, state, step, last loss and accuracy, last message."""
        import math

        c = self.curves
        total = c.total_steps or 0
        parts = [f"{self.run_dir.name}: {self.state}"]
        if self.batch_progress is not None:  # images, images/s, ETA, shards (and the merge)
            from napari_dinoseg._widgets.common.batch_runs import progress_line

            parts.append(self.merged or progress_line(self.batch_progress))
        elif total:
            parts.append(f"step {c.step}/{total}")
        elif c.stage:
            parts.append(f"{c.stage.get('stage')} {c.stage.get('done')}/{c.stage.get('total')}")
        if c.train_loss:
            parts.append(f"loss {c.train_loss[-1]:.4f}")
        if c.eval_acc1 and math.isfinite(c.eval_acc1[-1]):
            parts.append(f"val acc@1 {100 * c.eval_acc1[-1]:.1f}%")
        if self.knn:
            parts.append(f"k-NN top-1 {100 * self.knn[-1][1]:.1f}%")
        if c.messages and self.state in ("failed", "dead"):
            parts.append(c.messages[-1])
        elif self.state == "dead":
            parts.append("the process vanished; Resume continues from the last checkpoint")
        return " · ".join(parts)

    def confusion(self) -> dict[str, Any] | None:
        """The run's ``confusion_matrix.json`` (None before the first evaluation)."""
        from headless.train.evaluate import load_confusion

        if self.run_dir is None:
            return None
        return load_confusion(self.run_dir)

    def cancel(self) -> str:
        """Ask the run to checkpoint and stop; the message to show (errors raise)."""
        from headless.jobs.runs import cancel_run

        if self.run_dir is None:
            raise ValueError("no run to cancel")
        return cancel_run(self.run_dir)

    def resume(self) -> Any:
        """Continue the followed run from its last checkpoint; its new handle (errors raise)."""
        from headless.jobs.runners import resume

        if self.run_dir is None:
            raise ValueError("choose a run to resume (follow it first)")
        self.handle = resume(self.run_dir)
        return self.handle

    @staticmethod
    def list_runs(root: Path) -> list[tuple[str, str]]:
        """``(label, path)`` of the runs of ``root``, newest first (none if unreadable)."""
        from headless.jobs.runs import list_runs

        try:
            infos = list_runs(root)
        except OSError:
            infos = []
        return [(f"{info.name} ({info.state})", str(info.path)) for info in reversed(infos)]
