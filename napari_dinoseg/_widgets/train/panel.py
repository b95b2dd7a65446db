"""The Train panel: launch a training run on curated boxes and follow it live.

Training never runs in napari's process. Launch builds a job spec from the form (the same
validated model as ``dinoseg train``), checks the data, boxes, weights and runner in a worker
thread, writes the run folder and starts the runner process (a local process, SLURM or
torchrun). A timer then tails the run's ``log.jsonl``: progress bar, live loss / accuracy
curves, confusion matrix after each evaluation. Cancel asks the worker to checkpoint and stop;
Resume continues a stopped or killed run from its last checkpoint. Closing napari does not stop
a run; choose it again in "Follow" to see it. This module lays out and wires the form; the form's
values -> spec, and the followed run's state and wording, are in :mod:`.controller`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer, QUrl
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import hrow
from napari_dinoseg._widgets.common.scrolling import collapsible, scroll_layout
from napari_dinoseg._widgets.common.workers import WorkerSlot
from napari_dinoseg._widgets.train.controller import (
    CROPS,
    DEVICES,
    RESNET_MODELS,
    RUNNERS,
    VIT_MODELS,
    WEIGHT_CHOICES,
    TrainController,
    TrainForm,
    build_spec,
    launch_job,
    runner_note,
    runs_root,
    spec_dict,
)
from napari_dinoseg._widgets.train.progress_view import RunProgress

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["POLL_MS", "RESNET_MODELS", "VIT_MODELS", "TrainWidget"]

POLL_MS = 500


def _float_box(value: float, lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _int_box(value: int, lo: int, hi: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    return box


class TrainWidget(QWidget):
    """Train a classifier (seed 000) on an ImageFolder with box-aware crops; follow runs."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = TrainController()
        self._jobs = WorkerSlot(on_busy=lambda busy: self._update_buttons())

        # -- data --
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("ImageFolder: one sub-folder of images per class")
        data_btn = QPushButton("…")
        data_btn.clicked.connect(self._choose_data)
        self.boxes_edit = QLineEdit()
        self.boxes_edit.setPlaceholderText("exported boxes (COCO .json, VOC, .csv); optional")
        boxes_btn = QPushButton("…")
        boxes_btn.clicked.connect(self._choose_boxes)
        self.size_spin = _int_box(224, 14, 4096)
        self.batch_spin = _int_box(32, 1, 4096)
        self.val_spin = _float_box(0.2, 0.0, 0.9, 0.05, 2)
        self.workers_spin = _int_box(4, 0, 64)
        data_box = QGroupBox("Data")
        form = QFormLayout(data_box)
        form.addRow("dataset folder", hrow(self.data_edit, data_btn))
        form.addRow("boxes file", hrow(self.boxes_edit, boxes_btn))
        form.addRow("image size", self.size_spin)
        form.addRow("batch size", self.batch_spin)
        form.addRow("validation share", self.val_spin)
        form.addRow("loader workers", self.workers_spin)

        # -- job and model --
        self.job_combo = QComboBox()
        self.job_combo.addItem("classifier (seed 000)", "classifier")
        self.model_combo = QComboBox()
        self.model_combo.addItems([*RESNET_MODELS, *VIT_MODELS])
        self.weights_combo = QComboBox()
        self.weights_combo.setEditable(True)
        self.weights_combo.addItems(list(WEIGHT_CHOICES))
        self.weights_combo.setToolTip("empty: random for ResNets, official for ViTs; 'imagenet' "
                                      "(ResNet), 'official' (ViT), or a checkpoint file")
        self.freeze_check = QCheckBox("freeze backbone (linear head only)")
        self.cls_check = QCheckBox("train only the CLS token (ViT)")
        self.crop_combo = QComboBox()
        for label, key in CROPS:
            self.crop_combo.addItem(label, key)
        self.thr_spin = _float_box(1.0, 0.0, 1.0, 0.05, 2)
        self.temp_spin = _float_box(1.0, 0.01, 100.0, 0.1, 2)
        model_box = QGroupBox("Job")
        form = QFormLayout(model_box)
        form.addRow("job", self.job_combo)
        form.addRow("model", self.model_combo)
        form.addRow("weights", self.weights_combo)
        form.addRow(self.freeze_check)
        form.addRow(self.cls_check)
        form.addRow("crop", self.crop_combo)
        form.addRow("crop thr", self.thr_spin)
        form.addRow("attention T", self.temp_spin)

        # -- optimisation --
        self.opt_combo = QComboBox()
        self.opt_combo.addItems(["sgd", "adam", "adamw"])
        self.lr_spin = _float_box(0.1, 1e-6, 10.0, 0.01, 6)
        self.sched_combo = QComboBox()
        self.sched_combo.addItems(["cosine", "step", "constant"])
        self.target_spin = _float_box(0.0, 0.0, 10.0, 0.0001, 6)
        self.epochs_spin = _int_box(10, 1, 100000)
        self.smooth_spin = _float_box(0.1, 0.0, 0.9, 0.05, 2)
        self.ema_spin = _int_box(0, 0, 100000)
        self.ema_spin.setToolTip("update an EMA of the weights every k steps (0: no EMA)")
        self.augment_check = QCheckBox("colour augmentations")
        self.augment_check.setChecked(True)
        self.augment_p_spin = _float_box(0.5, 0.0, 1.0, 0.05, 2)
        self.augmix_check = QCheckBox("AugMix")
        self.seed_spin = _int_box(0, 0, 2**31 - 1)
        self.log_spin = _int_box(10, 1, 100000)
        self.log_spin.setToolTip("log loss / accuracy every N steps (the curves' resolution)")
        opt_box = QGroupBox("Optimisation")
        form = QFormLayout(opt_box)
        form.addRow("optimizer", self.opt_combo)
        form.addRow("learning rate", self.lr_spin)
        form.addRow("schedule", self.sched_combo)
        form.addRow("target lr", self.target_spin)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("label smoothing", self.smooth_spin)
        form.addRow("EMA every k steps", self.ema_spin)
        form.addRow(hrow(self.augment_check, QLabel("p"), self.augment_p_spin,
                         self.augmix_check))
        form.addRow("seed", self.seed_spin)
        form.addRow("log every (steps)", self.log_spin)

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
        for box in (data_box, model_box, opt_box, run_box):
            layout.addWidget(collapsible(box))
        layout.addWidget(self.progress_view)
        layout.addStretch(1)

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
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
    def form(self) -> TrainForm:
        """The form's fields as plain values."""
        return TrainForm(
            data_root=self.data_edit.text(), boxes=self.boxes_edit.text(),
            image_size=self.size_spin.value(), batch_size=self.batch_spin.value(),
            val_fraction=self.val_spin.value(), num_workers=self.workers_spin.value(),
            job=self.job_combo.currentData(), model=self.model_combo.currentText(),
            weights=self.weights_combo.currentText(),
            freeze_backbone=self.freeze_check.isChecked(), train_cls=self.cls_check.isChecked(),
            crop=self.crop_combo.currentData(), crop_thr=self.thr_spin.value(),
            temperature=self.temp_spin.value(), optimizer=self.opt_combo.currentText(),
            lr=self.lr_spin.value(), scheduler=self.sched_combo.currentText(),
            target_lr=self.target_spin.value(), num_epochs=self.epochs_spin.value(),
            label_smoothing=self.smooth_spin.value(), ema_step=self.ema_spin.value(),
            augment=self.augment_check.isChecked(), augment_p=self.augment_p_spin.value(),
            augmix=self.augmix_check.isChecked(), seed=self.seed_spin.value(),
            log_interval=self.log_spin.value(), device=self.device_combo.currentText(),
            name=self.name_edit.text(),
        )

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
        except ValueError as exc:
            show_error(str(exc))
            return
        job = launch_job(spec, self.runner_combo.currentText(), self.runs_root())
        self.status_label.setText("checking data, boxes, weights and runner…")
        self._jobs.start(job, self._on_launched, "launch training", on_error=self._launch_failed)

    def _launch_failed(self, exc: BaseException) -> None:
        self.status_label.setText(f"not started: {exc}")

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
    def _choose_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder (one sub-folder per class)")
        if folder:
            self.data_edit.setText(folder)

    def _choose_boxes(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Exported boxes", "", "Boxes (*.json *.csv *.xml);;All files (*)")
        if path:
            self.boxes_edit.setText(path)
            if self.crop_combo.currentData() == "random_resized":
                self.crop_combo.setCurrentIndex(self.crop_combo.findData("localized"))

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
