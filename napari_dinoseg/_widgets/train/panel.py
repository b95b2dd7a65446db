"""The Train panel: launch a training run on curated boxes and follow it live.

Training never runs in napari's process. Launch builds a job spec from the form (the same
validated model as ``dinoseg train``), checks the data, boxes, weights and runner in a worker
thread, writes the run folder and starts the runner process (a local process, SLURM or
torchrun). A timer then tails the run's ``log.jsonl``: progress bar, live loss / accuracy
curves, confusion matrix after each evaluation. Cancel asks the worker to checkpoint and stop;
Resume continues a stopped or killed run from its last checkpoint. Closing napari does not stop
a run; choose it again in "Follow" to see it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer, QUrl
from qtpy.QtGui import QColor, QDesktopServices
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.train.line_plot import LinePlot, Series

if TYPE_CHECKING:  # pragma: no cover
    import napari

RESNET_MODELS = ("resnet50", "resnet18", "resnet34", "resnet101", "test_resnet_tiny")
VIT_MODELS = ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vits14_reg",
              "dinov2_vitb14_reg", "test_dinov2_tiny14_reg")
POLL_MS = 500


def _path_row(edit: QLineEdit, button: QPushButton) -> QWidget:
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit)
    lay.addWidget(button)
    return row


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
        self.handle: Any = None  # RunHandle of a run started here (owns the process)
        self.run_dir: Path | None = None  # the run shown in the panel
        self._tail: Any = None
        self._curves: Any = None
        self._launching = False
        self._worker: Any = None
        self._ticks = 0
        self.state = ""

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
        form.addRow("dataset folder", _path_row(self.data_edit, data_btn))
        form.addRow("boxes file", _path_row(self.boxes_edit, boxes_btn))
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
        self.weights_combo.addItems(["", "random", "imagenet", "official"])
        self.weights_combo.setToolTip("empty: random for ResNets, official for ViTs; 'imagenet' "
                                      "(ResNet), 'official' (ViT), or a checkpoint file")
        self.freeze_check = QCheckBox("freeze backbone (linear head only)")
        self.cls_check = QCheckBox("train only the CLS token (ViT)")
        self.crop_combo = QComboBox()
        for label, key in (("RandomResizedCrop", "random_resized"),
                           ("LocalizedRandomResizedCrop (boxes)", "localized"),
                           ("AttentionDensityCrop (DINO maps)", "attention")):
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
        aug_row = QWidget()
        lay = QHBoxLayout(aug_row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.augment_check)
        lay.addWidget(QLabel("p"))
        lay.addWidget(self.augment_p_spin)
        lay.addWidget(self.augmix_check)
        form.addRow(aug_row)
        form.addRow("seed", self.seed_spin)
        form.addRow("log every (steps)", self.log_spin)

        # -- run --
        self.runner_combo = QComboBox()
        self.runner_combo.addItems(["local", "slurm", "torchrun"])
        self.runner_combo.currentTextChanged.connect(self._runner_changed)
        self.runner_note = QLabel("")
        self.runner_note.setWordWrap(True)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
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
        buttons = QWidget()
        lay = QHBoxLayout(buttons)
        lay.setContentsMargins(0, 0, 0, 0)
        for b in (self.launch_btn, self.cancel_btn, self.resume_btn):
            lay.addWidget(b)
        form.addRow(buttons)
        more = QWidget()
        lay = QHBoxLayout(more)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.open_btn)
        lay.addWidget(self.save_spec_btn)
        form.addRow(more)
        follow = QWidget()
        lay = QHBoxLayout(follow)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.follow_combo, 1)
        lay.addWidget(refresh_btn)
        form.addRow("follow", follow)

        # -- progress --
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = QLabel("no run")
        self.status_label.setWordWrap(True)
        self.loss_plot = LinePlot("loss")
        self.acc_plot = LinePlot("accuracy", y_range=(0.0, 1.0))
        self.confusion = QTableWidget()
        self.confusion.setMinimumHeight(120)
        self.confusion_label = QLabel("confusion matrix (rows: true, columns: predicted)")
        progress_box = QGroupBox("Progress")
        lay = QVBoxLayout(progress_box)
        lay.addWidget(self.progress)
        lay.addWidget(self.status_label)
        lay.addWidget(self.loss_plot)
        lay.addWidget(self.acc_plot)
        lay.addWidget(self.confusion_label)
        lay.addWidget(self.confusion)

        layout = QVBoxLayout(self)
        for box in (data_box, model_box, opt_box, run_box, progress_box):
            layout.addWidget(box)
        layout.addStretch(1)

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self._update_buttons()

    # -- the form -> a spec ------------------------------------------------------------------
    def spec_dict(self) -> dict[str, Any]:
        """The form as a spec dictionary (what ``dinoseg train`` reads from YAML)."""
        weights = self.weights_combo.currentText().strip() or None
        target = self.target_spin.value()
        return {
            "job": self.job_combo.currentData(),
            "name": self.name_edit.text().strip() or None,
            "seed": self.seed_spin.value(),
            "device": self.device_combo.currentText(),
            "num_epochs": self.epochs_spin.value(),
            "data": {
                "root": self.data_edit.text().strip(),
                "boxes": self.boxes_edit.text().strip() or None,
                "image_size": self.size_spin.value(),
                "batch_size": self.batch_spin.value(),
                "val_fraction": self.val_spin.value(),
                "num_workers": self.workers_spin.value(),
            },
            "crop": {"type": self.crop_combo.currentData(), "thr": self.thr_spin.value(),
                     "temperature": self.temp_spin.value()},
            "augment": {"enabled": self.augment_check.isChecked(),
                        "p": self.augment_p_spin.value(),
                        "augmix": self.augmix_check.isChecked()},
            "model": {"type": self.model_combo.currentText(), "weights": weights,
                      "freeze_backbone": self.freeze_check.isChecked(),
                      "train_cls": self.cls_check.isChecked(),
                      "ema_step": self.ema_spin.value()},
            "opt": {"type": self.opt_combo.currentText(), "lr": self.lr_spin.value(),
                    "scheduler": self.sched_combo.currentText(),
                    "target_lr": target if target > 0 else None,
                    "label_smoothing": self.smooth_spin.value()},
            "log": {"interval": self.log_spin.value()},
        }

    def build_spec(self) -> Any:
        from headless.jobs.spec import build_spec

        return build_spec(self.spec_dict())

    def runs_root(self) -> Path:
        from headless.jobs.runs import runs_root

        return runs_root(self.root_edit.text().strip() or None)

    # -- actions -------------------------------------------------------------------------------
    def launch(self) -> None:
        """Check everything in a worker thread, then start the run; errors are shown, not raised."""
        from napari.utils.notifications import show_error

        from napari_dinoseg._widgets.common.workers import start

        if self._launching:
            return
        if self.run_dir is not None and self.state in ("created", "queued", "running"):
            show_error(f"{self.run_dir.name} is still {self.state}; cancel it or wait")
            return
        try:
            spec = self.build_spec()
        except ValueError as exc:
            show_error(str(exc))
            return
        runner, root = self.runner_combo.currentText(), self.runs_root()

        def work():
            from headless.jobs.runners import launch
            from headless.progress import Progress

            yield Progress(0, 1, "checking data, boxes, weights and runner")
            return launch(spec, runner=runner, runs_root=root)

        self._launching = True
        self.status_label.setText("checking data, boxes, weights and runner…")
        self._update_buttons()
        self._worker = start(work(), self._on_launched, "launch training",
                             on_finish=self._launch_done, on_error=self._launch_failed)

    def _launch_failed(self, exc: BaseException) -> None:
        self.status_label.setText(f"not started: {exc}")

    def _launch_done(self) -> None:
        self._launching = False
        self._update_buttons()

    def _on_launched(self, handle: Any) -> None:
        from napari.utils.notifications import show_info

        self.handle = handle
        self.follow(handle.run_dir)
        show_info(f"training run {handle.run_dir.name} started ({handle.runner})")

    def follow(self, run_dir: str | Path) -> None:
        """Show a run's progress in the panel (a run started here or elsewhere)."""
        from headless.jobs.runlog import Curves, LogTail

        self.run_dir = Path(run_dir)
        if self.handle is not None and Path(self.handle.run_dir) != self.run_dir:
            self.handle = None
        self._tail = LogTail(self.run_dir / "log.jsonl")
        self._curves = Curves()
        self.state = ""
        self._ticks = 0
        self.loss_plot.clear()
        self.acc_plot.clear()
        self.confusion.clear()
        self.confusion.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.poll()
        self.timer.start()

    def poll(self) -> None:
        """Read new log lines and refresh the bar, curves, state and confusion matrix."""
        from headless.jobs.runlog import effective_state, read_status

        if self.run_dir is None or self._tail is None:
            return
        records = self._tail.read_new()
        if self._tail.reset:
            from headless.jobs.runlog import Curves

            self._curves = Curves()
        self._curves.add(records)
        if self.handle is not None and self.handle.process is not None:
            self.handle.process.poll()  # reap the child when it ends
        status = read_status(self.run_dir)
        self._ticks += 1
        # SLURM's state comes from squeue: ask every ~10 s, not every poll
        if status.get("runner") != "slurm" or self._ticks % 20 == 1 or any(
                r.get("kind") == "end" for r in records):
            self.state = effective_state(status)
        else:
            self.state = status.get("state", self.state)
        self._redraw()
        if any(r.get("kind") == "eval" for r in records) or (records and self.confusion
                                                             .rowCount() == 0):
            self.show_confusion()
        if self.state not in ("created", "queued", "running"):
            self.timer.stop()
        self._update_buttons()

    def _redraw(self) -> None:
        c = self._curves
        total = c.total_steps or 0
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(min(c.step, total))
        elif c.stage and c.stage.get("total"):
            self.progress.setRange(0, int(c.stage["total"]))
            self.progress.setValue(int(c.stage.get("done", 0)))
        parts = [f"{self.run_dir.name}: {self.state}"]
        if total:
            parts.append(f"step {c.step}/{total}")
        elif c.stage:
            parts.append(f"{c.stage.get('stage')} {c.stage.get('done')}/{c.stage.get('total')}")
        if c.train_loss:
            parts.append(f"loss {c.train_loss[-1]:.4f}")
        if c.eval_acc1:
            parts.append(f"val acc@1 {100 * c.eval_acc1[-1]:.1f}%")
        if c.messages and self.state in ("failed", "dead"):
            parts.append(c.messages[-1])
        elif self.state == "dead":
            parts.append("the process vanished; Resume continues from the last checkpoint")
        self.status_label.setText(" · ".join(parts))
        self.loss_plot.set_series([Series("train loss", c.train_step, c.train_loss, "#ffb74d"),
                                   Series("val loss", c.eval_step, c.eval_loss, "#ba68c8", True)],
                                  x_max=total or None)
        self.acc_plot.set_series([Series("train", c.train_step, c.train_acc, "#4fc3f7"),
                                  Series("val @1", c.eval_step, c.eval_acc1, "#81c784", True),
                                  Series("val @5", c.eval_step, c.eval_acc5, "#aed581", True)],
                                 x_max=total or None)

    def show_confusion(self) -> None:
        """Fill the table from the run's ``confusion_matrix.json`` (row-normalised shading)."""
        from headless.train.evaluate import load_confusion

        if self.run_dir is None:
            return
        data = load_confusion(self.run_dir)
        if data is None:
            return
        classes, matrix = data["classes"], data["matrix"]
        n = len(classes)
        self.confusion.setRowCount(n)
        self.confusion.setColumnCount(n)
        self.confusion.setHorizontalHeaderLabels(classes)
        self.confusion.setVerticalHeaderLabels(classes)
        for i, row in enumerate(matrix):
            total = sum(row) or 1
            for j, value in enumerate(row):
                item = QTableWidgetItem(str(value))
                share = value / total
                color = QColor(46, 125, 50) if i == j else QColor(198, 40, 40)
                color.setAlpha(int(30 + 200 * share) if value else 0)
                item.setBackground(color)
                self.confusion.setItem(i, j, item)
        acc = data.get("acc1")
        acc_text = f", acc@1 {100 * acc:.1f}%" if isinstance(acc, float) and math.isfinite(acc) \
            else ""
        self.confusion_label.setText(
            f"confusion matrix at step {data.get('step')} (rows: true, columns: predicted"
            f"{acc_text})"
        )

    def cancel(self) -> None:
        from napari.utils.notifications import show_error, show_info

        from headless.jobs.runs import cancel_run

        if self.run_dir is None:
            show_error("no run to cancel")
            return
        try:
            show_info(cancel_run(self.run_dir))
        except (ValueError, OSError) as exc:
            show_error(str(exc))
        self.timer.start()
        self.poll()

    def resume(self) -> None:
        from napari.utils.notifications import show_error, show_info

        from headless.jobs.runners import resume

        if self.run_dir is None:
            show_error("choose a run to resume (follow it first)")
            return
        try:
            handle = resume(self.run_dir)
        except (ValueError, OSError) as exc:
            show_error(str(exc))
            return
        self.handle = handle
        show_info(f"{handle.run_dir.name} resumed ({handle.runner})")
        self.follow(handle.run_dir)

    def open_folder(self) -> None:
        from napari.utils.notifications import show_error

        if self.run_dir is None:
            show_error("no run folder yet")
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.run_dir)))

    def refresh_runs(self) -> None:
        from headless.jobs.runs import list_runs

        self.follow_combo.clear()
        try:
            infos = list_runs(self.runs_root())
        except OSError:
            infos = []
        for info in reversed(infos):
            self.follow_combo.addItem(f"{info.name} ({info.state})", str(info.path))

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
        if name == "slurm":
            from headless.jobs.runners import RunnerUnavailable, SlurmRunner

            try:
                SlurmRunner().check(None)
                self.runner_note.setText("")
            except RunnerUnavailable as exc:
                self.runner_note.setText(str(exc))
        elif name == "torchrun":
            self.runner_note.setText("one process per GPU of this machine (checked at launch)")
        else:
            self.runner_note.setText("")

    def _update_buttons(self) -> None:
        active = self.state in ("created", "queued", "running")
        self.launch_btn.setEnabled(not self._launching)
        self.cancel_btn.setEnabled(self.run_dir is not None and active)
        self.resume_btn.setEnabled(self.run_dir is not None and self.state in
                                   ("cancelled", "interrupted", "dead", "failed"))
        self.open_btn.setEnabled(self.run_dir is not None)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()  # the run itself goes on
        super().closeEvent(event)
