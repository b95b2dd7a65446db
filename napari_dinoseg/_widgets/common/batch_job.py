"""The "Run as job" group a dock embeds: its command over a whole folder, as a batch run.

The dock hands over ``build() -> (task, images, out, options, device)`` (a ``ValueError``'s one
line is shown and nothing starts) and ``on_done(manifest)``. The group picks the runner (local,
torchrun, slurm: those that cannot run here are greyed, the reason as their tooltip), the
shards and the batch size; Start lists the images, writes the spec and starts the runner in a
worker thread; the bar and the line below follow the shards (images, images/s, ETA); Cancel asks
the run to stop. The run is its own process: closing the dock or napari stops only the
following (resume or follow the run in the Train dock). The steps are :mod:`.batch_runs`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QUrl
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
)

from napari_dinoseg._widgets.common import workers
from napari_dinoseg._widgets.common.batch_runs import (
    JobRequest,
    JobSettings,
    cancel_job,
    follow_job,
    launch_job,
    output_folder,
    runner_check_job,
)
from napari_dinoseg._widgets.common.following import in_window, stopper, unless_deleted
from napari_dinoseg._widgets.common.notices import notify
from napari_dinoseg._widgets.common.qt_helpers import hrow, int_spin
from napari_dinoseg._widgets.common.runner_choice import RunnerCombo

Notice = Callable[[str, str], None]


class BatchJobBox(QGroupBox):
    """Runner, shards, batch size, output; Start / Cancel / Open output; the run's progress."""

    def __init__(self, task: str, build: Callable[[], Any],
                 on_done: Callable[[dict[str, Any]], Any] | None = None,
                 notice: Notice | None = None, *, out_hint: str = "", out_is_file: bool = False,
                 prepare: Callable[..., dict[str, Any]] | None = None) -> None:
        super().__init__("Run as job")
        self.task, self.build, self.on_done, self.prepare = task, build, on_done, prepare
        self.notice = notice or notify
        self.out_is_file = out_is_file
        self.num_workers = 2  # image-decoding processes per task
        self.runs_root: str | Path | None = None  # default: $DINOSEG_RUNS or ~/.dinoseg/runs
        self.poll_s = 1.0
        self.started: Any = None
        self.finished: Any = None
        self._checked = False
        self._stops: list[threading.Event] = []
        self._out: Any = ""
        self._watched = False
        self._launch = workers.WorkerSlot(on_busy=self._update, on_status=self._say)
        self._follow = workers.WorkerSlot(on_busy=self._update, on_status=self._say)

        self.runner_combo = RunnerCombo()
        self.shards_spin = int_spin(0, 100000, 0)
        self.shards_spin.setSpecialValueText("auto")
        self.shards_spin.setToolTip("split the sorted image list into N shards (auto: one; "
                                    "torchrun: one per process); a SLURM array task per shard")
        self.batch_spin: QSpinBox = int_spin(1, 1024, 8)
        self.batch_spin.setToolTip("images per forward pass (images of one input shape)")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText(out_hint or "output")
        self.out_edit.setToolTip("where the merged outputs go; empty: " + (out_hint or "default"))
        out_btn = QPushButton("…")
        out_btn.setMaximumWidth(30)
        out_btn.clicked.connect(self._choose_out)
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        self.open_btn = QPushButton("Open output")
        self.open_btn.clicked.connect(self.open_output)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.label = QLabel("every image of the folder, in a background process")
        self.label.setWordWrap(True)
        self.outputs_label = QLabel("")
        self.outputs_label.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("runner", self.runner_combo)
        form.addRow("shards", hrow((self.shards_spin, 1), QLabel("batch"), (self.batch_spin, 1)))
        form.addRow("output", hrow((self.out_edit, 1), out_btn))
        form.addRow(hrow(self.start_btn, self.cancel_btn, self.open_btn))
        form.addRow(self.bar)
        form.addRow(self.label)
        form.addRow(self.outputs_label)
        self.destroyed.connect(stopper(self._stops))
        self._update()

    # -- what the dock reads --------------------------------------------------------------------
    def output(self) -> str:
        """The output typed or chosen ('' = the dock's default)."""
        return self.out_edit.text().strip()

    @property
    def running(self) -> bool:
        return self._launch.busy or self._follow.busy

    def section(self, expanded: bool = False) -> Any:
        """The group in a foldable section; the runners are checked when it first unfolds."""
        from napari_dinoseg._widgets.common.scrolling import collapsible

        sec = collapsible(self, expanded=expanded)
        sec.toggled.connect(lambda *_: self.check_runners(once=True))
        if expanded:
            self.check_runners(once=True)
        return sec

    # -- runners --------------------------------------------------------------------------------
    def check_runners(self, once: bool = False) -> None:
        """Grey the runners that cannot run here (checked in a worker thread)."""
        if once and self._checked:
            return
        self._checked = True
        try:
            device = JobRequest.of(self.build()).device
        except Exception:  # noqa: BLE001 - nothing to run yet: check for any device
            device = "auto"
        workers.start(runner_check_job(self.task, device), self._set_runners,
                      "checking job runners")

    @unless_deleted
    def _set_runners(self, runners: dict[str, str | None]) -> None:
        self.runner_combo.set_runners(runners)

    @property
    def runners(self) -> dict[str, str | None]:
        """The last check: runner name -> None (it can run here) or the reason it cannot."""
        return self.runner_combo.runners

    # -- start, follow, cancel --------------------------------------------------------------------
    def start(self) -> None:
        """Build the request (the dock's settings), then list, check and start in a worker."""
        if self.running:
            return
        try:
            req = JobRequest.of(self.build())
        except Exception as exc:  # noqa: BLE001 - one line in the dock, never raised into Qt
            line = workers.error_line(exc)
            self._say(line)
            self.notice("error", line)
            return
        how = JobSettings(self.runner_combo.currentText(), self.shards_spin.value(),
                          self.batch_spin.value(), self.num_workers, self.runs_root)
        self.started = self.finished = None
        self.outputs_label.setText("")
        self.bar.setRange(0, 0)  # busy until the first progress
        self._out = req.out
        self._say(f"starting the {req.task} job ({how.runner})…")
        self._launch.start(launch_job(req, how, self.prepare), self._launched,
                           f"start {req.task} job", on_error=self._not_started)

    @unless_deleted
    def _not_started(self, exc: BaseException) -> None:
        self.bar.setRange(0, 1)
        self._say(f"not started: {workers.error_line(exc)}")
        if getattr(exc, "runners", None):
            self.runner_combo.set_runners(exc.runners)

    @unless_deleted
    def _launched(self, started: Any) -> None:
        self.started = started
        self.runner_combo.set_runners(started.runners)
        self._say(started.line())
        for w in started.warnings:
            self.notice("warning", w)
        stop = threading.Event()
        self._stops.append(stop)
        self._watched = in_window(self)
        self._follow.start(follow_job(started, stop, self.poll_s), self._ended,
                           f"{self.task} job {started.run_dir.name}", on_yield=self._progress)

    @unless_deleted
    def _progress(self, item: Any) -> None:
        if self.finished is not None:  # a late update (napari's bar may process events)
            return
        if self._watched and not in_window(self):  # the dock was closed: stop following
            self.stop_following()
            return
        self.bar.setRange(0, max(item.total, 1))
        self.bar.setValue(item.done)
        self._say(item.message)

    @unless_deleted
    def _ended(self, result: Any) -> None:
        if result is None:  # stopped following; the run goes on
            return
        self.finished = result
        self._say(result.message)
        if result.manifest is None:
            self.notice("warning", result.message)
        else:
            self.bar.setValue(self.bar.maximum())
            self.outputs_label.setText("\n".join(result.manifest.get("outputs", [])))
            if self.on_done is not None:
                try:
                    self.on_done(result.manifest)
                except Exception as exc:  # noqa: BLE001 - a notice, never raised into Qt
                    self.notice("error", f"after the job: {workers.error_line(exc)}")
        self._update()

    def cancel(self) -> None:
        if self.started is None:
            return
        workers.start(cancel_job(self.started.run_dir), self._say, "cancel job")

    def stop_following(self) -> None:
        """Stop the follower thread (the run itself goes on)."""
        for stop in self._stops:
            stop.set()

    def open_output(self) -> None:
        if self.finished is not None:
            folder = output_folder(self.finished.manifest, self._out)
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # -- small helpers --------------------------------------------------------------------------
    def _choose_out(self) -> None:
        if self.out_is_file:
            path, _ = QFileDialog.getSaveFileName(self, "Merged output", self.output(),
                                                  "COCO JSON (*.json);;CSV (*.csv)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Output folder", self.output())
        if path:
            self.out_edit.setText(path)

    @unless_deleted
    def _say(self, text: str) -> None:
        self.label.setText(text)

    @unless_deleted
    def _update(self, *_: Any) -> None:
        self.start_btn.setEnabled(not self.running)
        self.cancel_btn.setEnabled(self._follow.busy)
        self.open_btn.setEnabled(self.finished is not None and self.finished.manifest is not None)

