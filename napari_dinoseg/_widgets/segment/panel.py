"""The scribble segmentation dock: paint classes, watch the segmentation follow every stroke.

Flow: a scribble Labels layer (one value per named class) sits over the image. Each stroke
restarts a short debounce timer; when it fires the scribbles are autosaved and, with live
training on, a worker trains the probe and segments the current slice
(:class:`headless.segment.Segmenter`). One worker runs at a time: a stroke during a run marks the
run stale, quits it once it is past the feature stage (features are cached per image, so they
are never thrown away half done), and a fresh run starts when it ends. Results update a
segmentation Labels layer and a per-class probability Image layer (:mod:`.layers`).

This module is the Qt side: fields, layer events and workers. What the dock knows lives in
:mod:`.controller` (class names, probe, feature caches, which run is current); saving and
restoring in :mod:`.autosave` and :mod:`.project`; the probe actions in :mod:`.probe_actions`.
Problems (one class scribbled, wrong shape, a probe from other features, missing weights)
become a status line or a notification; napari never crashes and the scribble layer is never
modified by the dock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QWidget

from napari_dinoseg._widgets.common.fields import ModelFields
from napari_dinoseg._widgets.common.layer_picking import fill_combo, watch_layers
from napari_dinoseg._widgets.common.qt_helpers import in_steps
from napari_dinoseg._widgets.common.scrolling import scroll_layout
from napari_dinoseg._widgets.common.selection import select_for_painting
from napari_dinoseg._widgets.common.warmup import warm_up_brush_later, warm_up_later
from napari_dinoseg._widgets.common.workers import WorkerSlot
from napari_dinoseg._widgets.segment import layers as seg_layers
from napari_dinoseg._widgets.segment.autosave import Autosaver
from napari_dinoseg._widgets.segment.batch_job import attach_segment_job
from napari_dinoseg._widgets.segment.controller import (
    DockOptions,
    Notice,
    SegmentController,
    slice_index,
    spatial_shape,
    summary,
)
from napari_dinoseg._widgets.segment.groups import ClassTable, CRFGroup, button, row
from napari_dinoseg._widgets.segment.probe_actions import ProbeActions
from napari_dinoseg._widgets.segment.project import ProjectWork

if TYPE_CHECKING:  # pragma: no cover
    import napari

DEBOUNCE_MS = 300
FEATURE_CHOICES = (("classical", "classical (no weights)"), ("hr", "HR-Dv2"),
                   ("bilinear", "bilinear"), ("hybrid", "hybrid (HR-Dv2 + classical)"))
WEIGHTS_TIP = ("'official' (cache folder), 'random' (untrained: for trying the tool only) or a "
               "checkpoint file")


class SegmentWidget(ProjectWork, ProbeActions, QWidget):
    """Scribbles -> live linear probe / random forest -> segmentation, CRF, batch apply."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from headless.features.backbones import list_backbones
        from headless.segment import DEFAULT_BACKBONE

        self.viewer = napari_viewer
        self.controller = SegmentController()
        warm_up_later("segment")  # first layer / first training imports, off the GUI thread
        warm_up_brush_later(napari_viewer)  # napari's paint cursor, made and drawn beforehand
        self.autosaver = Autosaver()
        self._slot = WorkerSlot(on_busy=self._on_busy, on_status=lambda s: self.status.setText(s))
        self._pending = False
        self._listening: Any = None  # the scribble layer whose paint events we follow
        self._restored: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_strokes_settled)

        # -- image, scribbles and classes --------------------------------------------------
        self.image_combo = QComboBox()
        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        self.scribble_combo = QComboBox()
        self.scribble_combo.currentTextChanged.connect(self._on_scribbles_changed)
        new_btn = button("New", self.new_scribble_layer,
                         "add a scribble Labels layer over the chosen image")
        self.classes = ClassTable(self.add_class, self._remove_selected_class)
        self.class_table = self.classes.table
        self.class_table.itemChanged.connect(self._on_class_renamed)
        self.class_table.currentCellChanged.connect(self._on_class_selected)

        # -- features and classifier -------------------------------------------------------
        self.features_combo = QComboBox()
        for mode, text in FEATURE_CHOICES:
            self.features_combo.addItem(text, mode)
        self.features_combo.currentIndexChanged.connect(self._on_features_changed)
        self.model_fields = ModelFields(self, list_backbones(include_test=True),
                                        DEFAULT_BACKBONE, weights_tip=WEIGHTS_TIP)
        self._slot.weights_fields = [self.model_fields]
        self.backbone_combo = self.model_fields.name_combo
        self.weights_edit = self.model_fields.weights_edit
        self.shifts_combo = QComboBox()
        self.shifts_combo.addItems(["4", "8", "0"])
        self.flips_check = QCheckBox("flips")
        self.classifier_combo = QComboBox()
        self.classifier_combo.addItem("random forest", "rf")
        self.classifier_combo.addItem("linear probe", "linear")
        self.balance_check = QCheckBox("balance classes")
        self.balance_check.setChecked(True)
        self.live_check = QCheckBox("live: retrain after every stroke")
        self.live_check.setChecked(True)

        self.crf_group = CRFGroup()
        self.crf_group.on_change(self._on_result_settings_changed)
        self.show_probs_check = QCheckBox("show probability layers (one per class)")
        self.show_probs_check.setToolTip(
            "one Image layer per class, same shape as the image (no extra viewer dimension)")
        self.show_probs_check.toggled.connect(self._on_result_settings_changed)

        # -- actions ---------------------------------------------------------------------------
        self.train_button = button("Train && segment", self.train_now)
        self.stack_button = button("Apply to stack", self.apply_to_stack,
                                    "segment every slice of the chosen image with the probe")
        self.folder_button = button("Apply to folder…", self.apply_to_folder)
        self.probs_check = QCheckBox("also write probabilities")
        self.save_button = button("Save probe…", self.save_probe)
        self.load_button = button("Load probe…", self.load_probe)
        self.autosave_check = QCheckBox("autosave into the image's project folder")
        self.autosave_check.setChecked(True)
        self.status = QLabel("Choose an image, add a scribble layer and paint two classes.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("scribbles", row(self.scribble_combo, new_btn, stretch_first=True))
        form.addRow("features", self.features_combo)
        self.model_fields.add_rows(form, "backbone", "weights", device=False)
        form.addRow("HR-Dv2", row(QLabel("shifts"), self.shifts_combo, self.flips_check))
        form.addRow("classifier", self.classifier_combo)
        form.addRow("", self.balance_check)
        form.addRow("", self.live_check)
        layout = scroll_layout(self)
        layout.addLayout(form)
        self.classes.add_to(layout)
        layout.addWidget(self.crf_group)
        layout.addWidget(self.show_probs_check)
        layout.addWidget(self.train_button)
        layout.addLayout(row(self.stack_button, self.folder_button))
        layout.addWidget(self.probs_check)
        layout.addLayout(row(self.save_button, self.load_button))
        layout.addWidget(self.autosave_check)
        layout.addWidget(attach_segment_job(self))  # the probe on the whole folder, as a job
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._fill_class_table()
        self._on_features_changed()
        self._layer_watch = watch_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    # the probe and the last segmentation live in the controller
    @property
    def probe(self) -> Any:
        return self.controller.probe

    @probe.setter
    def probe(self, value: Any) -> None:
        self.controller.probe = value

    @property
    def last_segmentation(self) -> Any:
        return self.controller.last_segmentation

    @last_segmentation.setter
    def last_segmentation(self, value: Any) -> None:
        self.controller.last_segmentation = value

    # ------------------------------------------------------------------ layers
    def image_layer(self) -> Any:
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def scribble_layer(self) -> Any:
        name = self.scribble_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _refresh_layers(self, renamed: dict[str, str] | None = None) -> None:
        images, labels = seg_layers.input_layer_names(self.viewer)
        fill_combo(self.image_combo, images, renamed=renamed)
        fill_combo(self.scribble_combo, labels, renamed=renamed)
        # prefer the scribble layer made for the chosen image
        img = self.image_layer()
        if img is not None:
            own = f"{img.name} scribbles"
            if own in labels and self.scribble_combo.currentText() != own:
                self.scribble_combo.setCurrentText(own)
        if self.image_combo.currentText() and img is not None and img.name not in self._restored:
            self._on_image_changed(img.name)
        self._listen(self.scribble_layer())

    def _on_image_changed(self, name: str = "") -> None:
        img = self.image_layer()
        if img is None:
            return
        if img.name not in self._restored:
            self._restored.add(img.name)
            self.restore()
        own = f"{img.name} scribbles"
        if own in self.viewer.layers and self.scribble_combo.currentText() != own:
            self.scribble_combo.setCurrentText(own)

    def _on_scribbles_changed(self, name: str = "") -> None:
        self._listen(self.scribble_layer())

    def _listen(self, layer: Any) -> None:
        """Follow the paint events of ``layer`` (and stop following the previous one)."""
        if layer is self._listening:
            return
        if self._listening is not None:
            try:
                self._listening.events.paint.disconnect(self._on_stroke)
                self._listening.events.data.disconnect(self._on_stroke)
            except (TypeError, RuntimeError, ValueError):
                pass
        self._listening = layer
        if layer is not None:
            layer.events.paint.connect(self._on_stroke)
            layer.events.data.connect(self._on_stroke)
            self._sync_classes_from_layer(layer)
            self._fill_class_table(select=self.classes.selected_value())

    def spatial_shape(self, layer: Any | None = None) -> tuple[int, ...]:
        """Shape of the image without its colour axis: (H, W) or (N, H, W)."""
        return spatial_shape(layer or self.image_layer())

    def new_scribble_layer(self) -> Any:
        """Add (or return) the scribble Labels layer of the chosen image, with its classes."""
        from napari.utils.notifications import show_error

        img = self.image_layer()
        if img is None:
            show_error("Open an image first, then add a scribble layer.")
            return None
        if getattr(img, "multiscale", False):
            show_error("Multiscale images are not supported for scribble segmentation.")
            return None
        name = f"{img.name} scribbles"
        added = name not in self.viewer.layers
        if added:
            data = np.zeros(self.spatial_shape(img), np.uint16)
            layer = seg_layers.add_scribble_layer(self.viewer, img, data, name)
        else:
            layer = self.viewer.layers[name]
        self.scribble_combo.setCurrentText(name)
        self._listen(layer)
        seg_layers.set_label_features(layer, self.controller.label_features())

        def brush() -> None:  # paint mode (napari's brush cursor): next turn after a new layer
            if layer in self.viewer.layers:
                select_for_painting(self.viewer, layer, self.controller.first_class())

        if added:
            in_steps(self.viewer, brush)
        else:
            brush()
        return layer

    # ------------------------------------------------------------------ classes
    def class_names(self) -> dict[int, str]:
        return self.controller.class_names()

    def add_class(self, name: str | None = None, value: int | None = None) -> int:
        """Add a named class (next free value by default) and select it for painting."""
        value = self.controller.add_class(name, value)
        self._fill_class_table(select=value)
        self._class_names_changed()
        return value

    def set_class_names(self, names: dict[int, str]) -> None:
        self.controller.set_class_names(names)
        self._fill_class_table()
        self._class_names_changed()

    def _remove_selected_class(self) -> None:
        value = self.classes.selected_value()
        if value is None:
            return
        self.controller.remove_class(value)
        self._fill_class_table()
        self._class_names_changed()

    def _fill_class_table(self, select: int | None = None) -> None:
        self.classes.fill(self.controller.class_names(), select,
                          colors=seg_layers.label_colors(self.scribble_layer(),
                                                         self.controller.class_names()))
        if select is not None and self.scribble_layer() is not None:
            self.scribble_layer().selected_label = select

    def _on_class_renamed(self, item: Any) -> None:
        if item.column() != 1:
            return
        self.controller.rename_class(self.classes.value_at(item.row()), item.text())
        self._class_names_changed()

    def _on_class_selected(self, row: int, *args: Any) -> None:
        layer, value = self.scribble_layer(), self.classes.value_at(row)
        if layer is not None and value is not None:
            layer.selected_label = value

    def _class_names_changed(self) -> None:
        layer = self.scribble_layer()
        if layer is not None:
            seg_layers.set_label_features(layer, self.controller.label_features())
        self._autosave(classes=True)

    def _sync_classes_from_layer(self, layer: Any) -> None:
        """Values painted in ``layer`` but missing from the table get a default name."""
        try:
            present = [int(v) for v in np.unique(np.asarray(layer.data)) if v > 0]
        except Exception:  # noqa: BLE001
            return
        if self.controller.name_missing(present):
            self._fill_class_table()

    # ------------------------------------------------------------------ settings
    def _on_features_changed(self, *args: Any) -> None:
        from headless.segment import DEFAULT_CLASSIFIER

        mode = self.features_combo.currentData()
        vit = mode != "classical"
        for w in (*self.model_fields.widgets(), self.shifts_combo, self.flips_check):
            w.setEnabled(vit)
        self.classifier_combo.setCurrentIndex(
            self.classifier_combo.findData(DEFAULT_CLASSIFIER[mode]))

    def set_features(self, mode: str, backbone: str | None = None, weights: str | None = None
                     ) -> None:
        """Choose the feature mode (and backbone / weights) programmatically."""
        idx = self.features_combo.findData(mode)
        if idx < 0:
            raise ValueError(f"unknown feature mode {mode!r}")
        self.features_combo.setCurrentIndex(idx)
        if backbone:
            self.backbone_combo.setCurrentText(backbone)
        if weights:
            self.weights_edit.setText(weights)

    def options(self) -> DockOptions:
        """The fields as plain values; the controller turns them into engine settings."""
        return DockOptions(
            mode=self.features_combo.currentData(), backbone=self.backbone_combo.currentText(),
            weights=self.weights_edit.text(), shifts=int(self.shifts_combo.currentText()),
            flips=self.flips_check.isChecked(), classifier=self.classifier_combo.currentData(),
            balance=self.balance_check.isChecked(), crf=self.crf_group.values(),
            knobs=self.controller.knobs, knobs_mode=self.controller.knobs_mode)

    def feature_spec(self) -> Any:
        return self.options().feature_spec()

    def crf_params(self) -> Any:
        return self.options().crf_params()

    def settings(self) -> Any:
        return self.options().settings()

    def _segmenter(self) -> Any:
        return self.controller.segmenter(self.options())

    # ------------------------------------------------------------------ live training
    def _on_stroke(self, event: Any = None) -> None:
        self._timer.start()  # restarts: strokes within DEBOUNCE_MS coalesce
        worker = self._worker
        if worker is not None and worker is not True and self.controller.phase == "fit":
            worker.quit()  # superseded by this stroke; the features stay cached

    def _on_strokes_settled(self) -> None:
        self._autosave(scribbles=True)
        if self.live_check.isChecked():
            self.train_now(live=True)

    def _on_result_settings_changed(self, *args: Any) -> None:
        """CRF on/off, its parameters, probability layers: refresh the result in live mode."""
        if self.live_check.isChecked() and self.probe is not None:
            self._timer.start()

    def current_index(self) -> tuple[int, ...]:
        """Index of the slice on screen in the leading (stack) axes of the image."""
        dims = self.viewer.dims
        return slice_index(self.spatial_shape(self.image_layer()), dims.current_step, dims.ndim)

    def train_now(self, live: bool = False) -> None:
        """Train on the scribbles and segment the slice on screen (in a worker)."""
        from napari.utils.notifications import show_error

        if self._worker is not None:
            self._pending = True
            return
        img, scr = self.image_layer(), self.scribble_layer()
        if img is None or scr is None:
            if not live:
                show_error("Choose an image and a scribble layer (press 'New') first.")
            return
        image = img.data  # converted in the worker (a lazy array loads off the GUI thread)
        scribbles = np.array(scr.data, copy=True)  # the user keeps painting meanwhile
        shape = self.spatial_shape(img)
        if tuple(scribbles.shape) != shape:
            msg = (f"the scribble layer '{scr.name}' has shape {tuple(scribbles.shape)} but the "
                   f"image '{img.name}' is {shape}; add a new scribble layer for this image")
            self.status.setText(msg)
            if not live:
                show_error(msg)
            return
        index = self.current_index()
        generation = self.controller.next_generation()
        try:
            segmenter = self._segmenter()
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        job = self.controller.train_job(segmenter, image, scribbles, index, self.class_names(),
                                        self.probe, generation, img.name)
        self.status.setText("training…")
        self._start(job, self._show_result, "scribble segmentation")

    @property
    def _worker(self) -> Any:
        """The running job (``True`` while it runs inline in sync mode), None when idle."""
        return self._slot.worker

    def _start(self, gen: Any, on_result: Any, description: str) -> None:
        self._slot.start(gen, on_result, description)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.controller.helper.shutdown()  # the CRF's helper process goes with the dock
        super().closeEvent(event)

    def _on_busy(self, busy: bool) -> None:
        if busy:
            return
        self.controller.phase = ""
        if self._pending:  # strokes arrived during the run: one more live run
            self._pending = False
            if not self._timer.isActive():  # else the timer starts the next run
                QTimer.singleShot(0, lambda: self.train_now(live=True))

    def _show_result(self, result: Any) -> None:
        if not self.controller.accept(result):
            return  # an older run finished after a newer one was shown
        if isinstance(result, Notice):
            self.status.setText(result.message)
            return
        self.show_segmentations(result.segmentations, result.slice_index, result.image_name)

        def then() -> None:  # a turn later: the result layer may have cost napari ~120 ms
            if self.controller.name_missing(result.probe.meta.class_values):
                self._fill_class_table()  # values painted outside the class table got a name
            self.status.setText(summary(result))
            self._autosave(segmentation=True, probe=True)

        in_steps(self.viewer, then)

    def show_segmentations(self, segs: list[Any], index: tuple[int, ...] | None,
                           image_name: str) -> None:
        """Write segmentations into the segmentation / probability layers of ``image_name``."""
        if image_name not in self.viewer.layers:
            return
        self.controller.last_segmentation = segs[-1]
        seg_layers.write_segmentations(self.viewer, segs, index, image_name,
                                       probabilities=self.show_probs_check.isChecked())
