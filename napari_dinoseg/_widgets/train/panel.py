"""The Train panel: launch a training run (classifier, fgvc or dino) and follow it live.

The job combo picks the job; each job shows its own fields in the Data, Job and Optimisation
sections (classifier: :mod:`.classifier_fields`; fgvc / dino: :mod:`.fgvc_fields`,
:mod:`.dino_fields`), the Run section is common. Training never runs in napari's process.
Launch builds a job spec from the form (the same validated model as ``dinoseg train``), checks
the data, boxes, weights and runner in a worker thread, writes the run folder and starts the
runner process (a local process, SLURM or torchrun). A timer then tails the run's
``log.jsonl``: progress bar, live loss / accuracy curves, confusion matrix after each
evaluation. Cancel asks the worker to checkpoint and stop; Resume continues a stopped or killed
run from its last checkpoint. Closing napari does not stop a run; choose it again in "Follow" to
see it. This module lays out and wires the form; the form's values -> spec, and the followed
run's state and wording, are in :mod:`.controller`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer, QUrl
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import hrow
from napari_dinoseg._widgets.common.scrolling import collapsible, fill_in_turns, scroll_layout
from napari_dinoseg._widgets.common.workers import WorkerSlot
from napari_dinoseg._widgets.train.classifier_fields import ClassifierFields
from napari_dinoseg._widgets.train.controller import (
    DEVICES,
    RESNET_MODELS,
    RUNNERS,
    VIT_MODELS,
    TrainController,
    TrainForm,
    build_spec,
    launch_job,
    one_line,
    runner_note,
    runs_root,
    spec_dict,
)
from napari_dinoseg._widgets.train.dino_fields import dino_fields
from napari_dinoseg._widgets.train.fgvc_fields import fgvc_fields
from napari_dinoseg._widgets.train.job_forms import JOBS, DinoForm, FgvcForm
from napari_dinoseg._widgets.train.progress_view import RunProgress

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["POLL_MS", "RESNET_MODELS", "VIT_MODELS", "TrainWidget"]

POLL_MS = 500
SECTION_TITLES = (("data", "Data"), ("model", "Job"), ("opt", "Optimisation"))


class TrainWidget(ClassifierFields, QWidget):
    """Train a classifier (seed 000), an IELT fine-grained classifier (fgvc, seed 002) or a DINO
    model (dino, seed 003); follow runs of any job."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = TrainController()
        self._jobs = WorkerSlot(on_busy=lambda busy: self._update_buttons())

        # -- the job and its own fields: one page per section and job, the chosen job's shown --
        self.job_combo = QComboBox()
        for label, key in JOBS:
            self.job_combo.addItem(label, key)
        self.fgvc_fields = fgvc_fields()
        self.dino_fields = dino_fields()
        pages = {"classifier": self._build_classifier(), "fgvc": self.fgvc_fields.pages,
                 "dino": self.dino_fields.pages}
        self.job_pages = pages
        boxes = []
        for section, title in SECTION_TITLES:
            box = QGroupBox(title)
            lay = QVBoxLayout(box)
            if section == "model":
                top = QWidget()
                QFormLayout(top).addRow("job", self.job_combo)
                top.layout().setContentsMargins(0, 0, 0, 0)
                lay.addWidget(top)
            for job_pages in pages.values():
                lay.addWidget(job_pages[section])
            boxes.append(box)
        data_box, model_box, opt_box = boxes

        # -- run --
        self.runner_combo = QComboBox()
        self.runner_combo.addItems(list(RUNNERS))
        self.runner_combo.currentTextChanged.connect(self._runner_changed)
        self.runner_note = QLabel("")
        self.runner_note.setWordWrap(True)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional run name")
        self.root_edit = QLineEdit()
        self.root_edit.setPlaceholderText("runs folder (default $DINOSEG_RUNS or ~/.dinoseg/runs)")
        self.launch_btn = QPushButton("Launch")
        self.launch_btn.clicked.connect(self.launch)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.clicked.connect(self.resume)
        self.open_btn = QPushButton("Open run folder")
        self.open_btn.clicked.connect(self.open_folder)
        self.save_spec_btn = QPushButton("Save spec…")
        self.save_spec_btn.setToolTip("write the form as a YAML spec for `dinoseg train SPEC`")
        self.save_spec_btn.clicked.connect(self._save_spec_dialog)
        self.follow_combo = QComboBox()
        self.follow_combo.setToolTip("follow an existing run of the runs folder")
        self.follow_combo.activated.connect(self._follow_chosen)
        refresh_btn = QPushButton("↻")
        refresh_btn.setToolTip("list the runs of the runs folder")
        refresh_btn.clicked.connect(self.refresh_runs)
        run_box = QGroupBox("Run")
        form = QFormLayout(run_box)
        form.addRow("runner", self.runner_combo)
        form.addRow(self.runner_note)
        form.addRow("device", self.device_combo)
        form.addRow("name", self.name_edit)
        form.addRow("runs folder", self.root_edit)
        form.addRow(hrow(self.launch_btn, self.cancel_btn, self.resume_btn))
        form.addRow(hrow(self.open_btn, self.save_spec_btn))
        form.addRow("follow", hrow((self.follow_combo, 1), refresh_btn))

        # -- progress --
        self.progress_view = RunProgress()
        self.progress = self.progress_view.bar
        self.status_label = self.progress_view.status_label
        self.loss_plot = self.progress_view.loss_plot
        self.acc_plot = self.progress_view.acc_plot
        self.confusion = self.progress_view.confusion
        self.confusion_label = self.progress_view.confusion_label

        layout = scroll_layout(self)
        self.sections = [collapsible(box) for box in (data_box, model_box, opt_box, run_box)]
        fill_in_turns(layout, [*self.sections, self.progress_view], self.viewer)

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.job_combo.currentIndexChanged.connect(self._job_changed)
        self._job_changed()
        self._update_buttons()

    # -- the state, kept by the controller ------------------------------------------------------
    @property
    def handle(self) -> Any:
        """RunHandle of a run started here (owns the process), else None."""
        return self.controller.handle

    @handle.setter
    def handle(self, value: Any) -> None:
        self.controller.handle = value

    @property
    def run_dir(self) -> Path | None:
        """The run shown in the panel."""
        return self.controller.run_dir

    @property
    def state(self) -> str:
        return self.controller.state

    @property
    def _curves(self) -> Any:
        return self.controller.curves

    @property
    def _launching(self) -> bool:
        return self._jobs.busy

    @property
    def _worker(self) -> Any:
        return self._jobs.worker

    # -- the form -> a spec ------------------------------------------------------------------
    @property
    def job(self) -> str:
        """The chosen job: classifier, fgvc or dino."""
        return self.job_combo.currentData()

    def job_fields(self, job: str | None = None) -> Any:
        """The :class:`~.job_fields.JobFields` of fgvc / dino (the chosen job's by default)."""
        return {"fgvc": self.fgvc_fields, "dino": self.dino_fields}[job or self.job]

    def set_job(self, job: str) -> None:
        self.job_combo.setCurrentIndex(self.job_combo.findData(job))

    def form(self) -> TrainForm | FgvcForm | DinoForm:
        """The chosen job's fields as plain values (with the Run box's device and name)."""
        device, name = self.device_combo.currentText(), self.name_edit.text()
        if self.job == "classifier":
            return self._classifier_form(device, name)
        return self.job_fields().form(device=device, name=name)

    def spec_dict(self) -> dict[str, Any]:
        """The form as a spec dictionary (what ``dinoseg train`` reads from YAML)."""
        return spec_dict(self.form())

    def build_spec(self) -> Any:
        return build_spec(self.form())

    def runs_root(self) -> Path:
        return runs_root(self.root_edit.text())

    # -- actions -------------------------------------------------------------------------------
    def launch(self) -> None:
        """Check everything in a worker thread, then start the run; errors are shown, not raised."""
        from napari.utils.notifications import show_error

        if self._jobs.busy:
            return
        busy = self.controller.busy_message()
        if busy is not None:
            show_error(busy)
            return
        try:
            spec = self.build_spec()
        except ValueError as exc:  # one line in the dock (and napari's notification)
            self.status_label.setText(f"not started: {one_line(exc)}")
            show_error(one_line(exc))
            return
        job = launch_job(spec, self.runner_combo.currentText(), self.runs_root())
        self.status_label.setText("checking data, boxes, weights and runner…")
        self._jobs.start(job, self._on_launched, "launch training", on_error=self._launch_failed)

    def _launch_failed(self, exc: BaseException) -> None:
        self.status_label.setText(f"not started: {one_line(exc)}")

    def _on_launched(self, handle: Any) -> None:
        from napari.utils.notifications import show_info

        self.handle = handle
        self.follow(handle.run_dir)
        show_info(f"training run {handle.run_dir.name} started ({handle.runner})")

    def follow(self, run_dir: str | Path) -> None:
        """Show a run's progress in the panel (a run started here or elsewhere)."""
        self.controller.follow(run_dir)
        self.progress_view.clear()
        self.poll()
        self.timer.start()

    def poll(self) -> None:
        """Read new log lines and refresh the bar, curves, state and confusion matrix."""
        from napari_dinoseg._widgets.common.collector import note_activity

        note_activity()  # a live view: full collections wait (see IdleCollections)
        records = self.controller.poll()
        if records is None:
            return
        self.progress_view.redraw(self.controller)
        if any(r.get("kind") == "eval" for r in records) or (records and self.confusion
                                                             .rowCount() == 0):
            self.show_confusion()
        if not self.controller.active:
            self.timer.stop()
        self._update_buttons()

    def show_confusion(self) -> None:
        """Fill the table from the run's ``confusion_matrix.json`` (row-normalised shading)."""
        self.progress_view.show_confusion(self.controller.confusion())

    def cancel(self) -> None:
        from napari.utils.notifications import show_error, show_info

        if self.run_dir is None:
            show_error("no run to cancel")
            return
        try:
            show_info(self.controller.cancel())
        except (ValueError, OSError) as exc:
            show_error(str(exc))
        self.timer.start()
        self.poll()

    def resume(self) -> None:
        from napari.utils.notifications import show_error, show_info

        if self.run_dir is None:
            show_error("choose a run to resume (follow it first)")
            return
        try:
            handle = self.controller.resume()
        except (ValueError, OSError) as exc:
            show_error(str(exc))
            return
        show_info(f"{handle.run_dir.name} resumed ({handle.runner})")
        self.follow(handle.run_dir)

    def open_folder(self) -> None:
        from napari.utils.notifications import show_error

        if self.run_dir is None:
            show_error("no run folder yet")
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.run_dir)))

    def refresh_runs(self) -> None:
        self.follow_combo.clear()
        for label, path in self.controller.list_runs(self.runs_root()):
            self.follow_combo.addItem(label, path)

    def _follow_chosen(self, index: int) -> None:
        path = self.follow_combo.itemData(index)
        if path:
            self.handle = None
            self.follow(path)

    def save_spec(self, path: str | Path) -> Path:
        """Write the form as a YAML spec (the CLI twin: ``dinoseg train PATH``)."""
        from headless.jobs.spec import save_spec

        return save_spec(self.build_spec(), path)

    # -- small helpers -------------------------------------------------------------------------
    def _save_spec_dialog(self) -> None:
        from napari.utils.notifications import show_error, show_info

        path, _ = QFileDialog.getSaveFileName(self, "Save job spec", "train.yaml",
                                              "YAML (*.yaml *.yml)")
        if not path:
            return
        try:
            show_info(f"spec saved: {self.save_spec(path)}")
        except (ValueError, OSError) as exc:
            show_error(str(exc))

    def _job_changed(self, *_: Any) -> None:
        """Show the chosen job's fields, hide the others'; refit the open sections."""
        for job, pages in self.job_pages.items():
            for page in pages.values():
                page.setVisible(job == self.job)
        for section in self.sections:
            if section.isExpanded():
                section.expand(animate=False)

    def _runner_changed(self, name: str) -> None:
        self.runner_note.setText(runner_note(name))

    def _update_buttons(self) -> None:
        self.launch_btn.setEnabled(not self._jobs.busy)
        self.cancel_btn.setEnabled(self.controller.can_cancel())
        self.resume_btn.setEnabled(self.controller.can_resume())
        self.open_btn.setEnabled(self.run_dir is not None)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()  # the run itself goes on
        super().closeEvent(event)
