"""The scribble segmentation dock: paint classes, watch the segmentation follow every stroke.

Flow: a scribble Labels layer (one value per named class) sits over the image. Each stroke
restarts a short debounce timer; when it fires the scribbles are autosaved and, with live
training on, a worker trains the probe and segments the current slice
(:class:`headless.segment.Segmenter`). One worker runs at a time: a stroke during a run marks the
run stale, quits it once it is past the feature stage (features are cached per image, so they
are never thrown away half done), and a fresh run starts when it ends. Results update a
segmentation Labels layer (values = the scribble values) and a per-class probability Image
layer (class axis first).

User work is autosaved into the image's project folder (:class:`headless.store.ProjectStore`,
temporary file + rename, on a single background writer so saves land in order) and restored
when the image is opened again. Problems (one class scribbled, wrong shape, a probe from other
features, missing weights) become a status line or a notification; napari never crashes and the
scribble layer is never modified by the dock.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import float_spin, int_spin

if TYPE_CHECKING:  # pragma: no cover
    import napari

DEBOUNCE_MS = 300
FEATURE_CHOICES = (("classical", "classical (no weights)"), ("hr", "HR-Dv2"),
                   ("bilinear", "bilinear"), ("hybrid", "hybrid (HR-Dv2 + classical)"))
META_KEY = "dinoseg_segment"
SCRIBBLES_FILE = "scribbles.tif"
SEGMENTATION_FILE = "segmentation.tif"
CLASSES_FILE = "classes.json"
PROBE_FILE = "probe.npz"
DEFAULT_CLASSES = {1: "background", 2: "foreground"}


@dataclass
class _RunResult:
    generation: int
    probe: Any
    segmentations: list[Any]
    slice_index: tuple[int, ...] | None  # None: every slice of the stack
    image_name: str


@dataclass
class _Notice:
    """A run that could not train (e.g. one class so far): shown in the status line only."""

    generation: int
    message: str


class SegmentWidget(QWidget):
    """Scribbles -> live linear probe / random forest -> segmentation, CRF, batch apply."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from headless.features.backbones import list_backbones
        from headless.segment.crf import CRFParams
        from headless.segment.workflow import DEFAULT_BACKBONE

        self.viewer = napari_viewer
        self.probe: Any = None
        self.last_segmentation: Any = None
        self._worker: Any = None
        self._phase = ""
        self._pending = False
        self._generation = 0
        self._shown_generation = -1
        self._sources: dict[Any, Any] = {}
        self._backbones: dict[tuple[str, str], Any] = {}
        self._listening: Any = None  # the scribble layer whose paint events we follow
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dinoseg-autosave")
        self._saves: list[Future] = []
        self._save_error = ""
        self._class_names: dict[int, str] = dict(DEFAULT_CLASSES)
        self._restored: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_strokes_settled)
        c = CRFParams()

        # -- image and scribbles -----------------------------------------------------------
        self.image_combo = QComboBox()
        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        self.scribble_combo = QComboBox()
        self.scribble_combo.currentTextChanged.connect(self._on_scribbles_changed)
        new_btn = QPushButton("New")
        new_btn.setToolTip("add a scribble Labels layer over the chosen image")
        new_btn.clicked.connect(lambda: self.new_scribble_layer())
        scr_row = QHBoxLayout()
        scr_row.addWidget(self.scribble_combo, 1)
        scr_row.addWidget(new_btn)

        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["value", "class name"])
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.setMaximumHeight(130)
        self.class_table.itemChanged.connect(self._on_class_renamed)
        self.class_table.currentCellChanged.connect(self._on_class_selected)
        add_cls = QPushButton("Add class")
        add_cls.clicked.connect(lambda: self.add_class())
        del_cls = QPushButton("Remove class")
        del_cls.setToolTip("forget the name of the selected class (its scribbles stay)")
        del_cls.clicked.connect(self._remove_selected_class)
        cls_row = QHBoxLayout()
        cls_row.addWidget(add_cls)
        cls_row.addWidget(del_cls)

        # -- features and classifier -------------------------------------------------------
        self.features_combo = QComboBox()
        for mode, text in FEATURE_CHOICES:
            self.features_combo.addItem(text, mode)
        self.features_combo.currentIndexChanged.connect(self._on_features_changed)
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(list_backbones(include_test=True))
        self.backbone_combo.setCurrentText(DEFAULT_BACKBONE)
        self.weights_edit = QLineEdit("official")
        self.weights_edit.setToolTip("'official' (cache folder), 'random' (untrained: for trying "
                                     "the tool only) or a checkpoint file")
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

        # -- CRF -----------------------------------------------------------------------------
        self.crf_group = QGroupBox("dense CRF refinement")
        self.crf_group.setCheckable(True)
        self.crf_group.setChecked(False)
        cf = QFormLayout(self.crf_group)
        self.crf_gsxy = float_spin(0.1, 50, 0.5, c.gaussian_sxy, decimals=1)
        self.crf_gcompat = float_spin(0, 50, 0.5, c.gaussian_compat, decimals=1)
        self.crf_bsxy = float_spin(0.1, 200, 1, c.bilateral_sxy, decimals=1)
        self.crf_bsrgb = float_spin(0.1, 255, 1, c.bilateral_srgb, decimals=1)
        self.crf_bcompat = float_spin(0, 50, 0.5, c.bilateral_compat, decimals=1)
        self.crf_iter = int_spin(1, 50, c.iterations)
        cf.addRow("gaussian px / weight", self._pair(self.crf_gsxy, self.crf_gcompat))
        cf.addRow("bilateral px / grey / weight",
                  self._pair(self.crf_bsxy, self.crf_bsrgb, self.crf_bcompat))
        cf.addRow("iterations", self.crf_iter)

        # -- actions ---------------------------------------------------------------------------
        self.train_button = QPushButton("Train && segment")
        self.train_button.clicked.connect(lambda: self.train_now())
        self.stack_button = QPushButton("Apply to stack")
        self.stack_button.setToolTip("segment every slice of the chosen image with the probe")
        self.stack_button.clicked.connect(lambda: self.apply_to_stack())
        self.folder_button = QPushButton("Apply to folder…")
        self.folder_button.clicked.connect(lambda: self.apply_to_folder())
        self.probs_check = QCheckBox("also write probabilities")
        self.save_button = QPushButton("Save probe…")
        self.save_button.clicked.connect(lambda: self.save_probe())
        self.load_button = QPushButton("Load probe…")
        self.load_button.clicked.connect(lambda: self.load_probe())
        self.autosave_check = QCheckBox("autosave into the image's project folder")
        self.autosave_check.setChecked(True)
        self.status = QLabel("Choose an image, add a scribble layer and paint two classes.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("scribbles", scr_row)
        form.addRow("features", self.features_combo)
        form.addRow("backbone", self.backbone_combo)
        form.addRow("weights", self.weights_edit)
        hr_row = QHBoxLayout()
        hr_row.addWidget(QLabel("shifts"))
        hr_row.addWidget(self.shifts_combo)
        hr_row.addWidget(self.flips_check)
        form.addRow("HR-Dv2", hr_row)
        form.addRow("classifier", self.classifier_combo)
        form.addRow("", self.balance_check)
        form.addRow("", self.live_check)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("classes (select one to paint it)"))
        layout.addWidget(self.class_table)
        layout.addLayout(cls_row)
        layout.addWidget(self.crf_group)
        layout.addWidget(self.train_button)
        apply_row = QHBoxLayout()
        apply_row.addWidget(self.stack_button)
        apply_row.addWidget(self.folder_button)
        layout.addLayout(apply_row)
        layout.addWidget(self.probs_check)
        probe_row = QHBoxLayout()
        probe_row.addWidget(self.save_button)
        probe_row.addWidget(self.load_button)
        layout.addLayout(probe_row)
        layout.addWidget(self.autosave_check)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._fill_class_table()
        self._on_features_changed()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    @staticmethod
    def _pair(*widgets: QWidget) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        for w in widgets:
            row.addWidget(w)
        return box

    # ------------------------------------------------------------------ layers and classes
    def image_layer(self) -> Any:
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def scribble_layer(self) -> Any:
        name = self.scribble_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _refresh_layers(self, event: Any = None) -> None:
        from napari.layers import Image, Labels

        images = [ly.name for ly in self.viewer.layers if isinstance(ly, Image)
                  and not ly.metadata.get("dinoseg_output") and META_KEY not in ly.metadata]
        labels = [ly.name for ly in self.viewer.layers if isinstance(ly, Labels)
                  and ly.metadata.get(META_KEY, {}).get("role", "scribbles") == "scribbles"
                  and not ly.metadata.get("dinoseg_output")]
        for combo, names in ((self.image_combo, images), (self.scribble_combo, labels)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
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

    def spatial_shape(self, layer: Any | None = None) -> tuple[int, ...]:
        """Shape of the image without its colour axis: (H, W) or (N, H, W)."""
        layer = layer or self.image_layer()
        shape = tuple(layer.data.shape)
        return shape[:-1] if getattr(layer, "rgb", False) else shape

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
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
        else:
            data = np.zeros(self.spatial_shape(img), np.uint16)
            layer = self.viewer.add_labels(
                data, name=name, scale=img.scale[-data.ndim:], translate=img.translate[-data.ndim:],
                metadata={META_KEY: {"role": "scribbles", "image": img.name}}, opacity=0.8,
            )
            layer.brush_size = 5
        layer.mode = "paint"
        self.scribble_combo.setCurrentText(name)
        self._listen(layer)
        self._apply_class_names(layer)
        first = min(self._class_names) if self._class_names else 1
        layer.selected_label = first
        return layer

    def class_names(self) -> dict[int, str]:
        return dict(self._class_names)

    def add_class(self, name: str | None = None, value: int | None = None) -> int:
        """Add a named class (next free value by default) and select it for painting."""
        if value is None:
            value = max(self._class_names, default=0) + 1
        self._class_names[int(value)] = name or f"class {value}"
        self._fill_class_table(select=int(value))
        self._class_names_changed()
        return int(value)

    def set_class_names(self, names: dict[int, str]) -> None:
        self._class_names = {int(k): str(v) for k, v in names.items() if int(k) > 0}
        self._fill_class_table()
        self._class_names_changed()

    def _remove_selected_class(self) -> None:
        row = self.class_table.currentRow()
        if row < 0:
            return
        value = int(self.class_table.item(row, 0).text())
        self._class_names.pop(value, None)
        self._fill_class_table()
        self._class_names_changed()

    def _fill_class_table(self, select: int | None = None) -> None:
        self.class_table.blockSignals(True)
        self.class_table.setRowCount(0)
        for value in sorted(self._class_names):
            row = self.class_table.rowCount()
            self.class_table.insertRow(row)
            v = QTableWidgetItem(str(value))
            v.setFlags(v.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.class_table.setItem(row, 0, v)
            self.class_table.setItem(row, 1, QTableWidgetItem(self._class_names[value]))
            if value == select:
                self.class_table.setCurrentCell(row, 1)
        self.class_table.blockSignals(False)
        if select is not None and self.scribble_layer() is not None:
            self.scribble_layer().selected_label = select

    def _on_class_renamed(self, item: QTableWidgetItem) -> None:
        if item.column() != 1:
            return
        value = int(self.class_table.item(item.row(), 0).text())
        self._class_names[value] = item.text().strip() or f"class {value}"
        self._class_names_changed()

    def _on_class_selected(self, row: int, *args: Any) -> None:
        layer = self.scribble_layer()
        if layer is not None and row >= 0 and self.class_table.item(row, 0) is not None:
            layer.selected_label = int(self.class_table.item(row, 0).text())

    def _class_names_changed(self) -> None:
        layer = self.scribble_layer()
        if layer is not None:
            self._apply_class_names(layer)
        self._autosave(classes=True)

    def _apply_class_names(self, layer: Any) -> None:
        values = sorted(self._class_names)
        try:
            layer.features = {"index": [0, *values],
                              "class": ["unlabelled", *(self._class_names[v] for v in values)]}
        except Exception:  # noqa: BLE001 - names are a display nicety, never fatal
            pass

    def _sync_classes_from_layer(self, layer: Any) -> None:
        """Values painted in ``layer`` but missing from the table get a default name."""
        try:
            present = [int(v) for v in np.unique(np.asarray(layer.data)) if v > 0]
        except Exception:  # noqa: BLE001
            return
        missing = [v for v in present if v not in self._class_names]
        if missing:
            for v in missing:
                self._class_names[v] = f"class {v}"
            self._fill_class_table()

    # ------------------------------------------------------------------ settings
    def _on_features_changed(self, *args: Any) -> None:
        from headless.segment.workflow import DEFAULT_CLASSIFIER

        mode = self.features_combo.currentData()
        vit = mode != "classical"
        for w in (self.backbone_combo, self.weights_edit, self.shifts_combo, self.flips_check):
            w.setEnabled(vit)
        idx = self.classifier_combo.findData(DEFAULT_CLASSIFIER[mode])
        self.classifier_combo.setCurrentIndex(idx)

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

    def feature_spec(self) -> Any:
        from headless.segment.workflow import FeatureSpec

        mode = self.features_combo.currentData()
        if mode == "classical":
            return FeatureSpec(mode="classical")
        return FeatureSpec(mode=mode, backbone=self.backbone_combo.currentText(),
                           weights=self.weights_edit.text().strip() or "official",
                           shifts=int(self.shifts_combo.currentText()),
                           flips=self.flips_check.isChecked())

    def crf_params(self) -> Any:
        from headless.segment.crf import CRFParams

        if not self.crf_group.isChecked():
            return None
        return CRFParams(
            gaussian_sxy=self.crf_gsxy.value(), gaussian_compat=self.crf_gcompat.value(),
            bilateral_sxy=self.crf_bsxy.value(), bilateral_srgb=self.crf_bsrgb.value(),
            bilateral_compat=self.crf_bcompat.value(), iterations=self.crf_iter.value(),
        )

    def settings(self) -> Any:
        from headless.segment.probe import TrainParams
        from headless.segment.workflow import SegmentSettings

        return SegmentSettings(
            features=self.feature_spec(), classifier=self.classifier_combo.currentData(),
            train=TrainParams(balance=self.balance_check.isChecked()), crf=self.crf_params(),
        )

    def _segmenter(self) -> Any:
        """A Segmenter whose feature cache survives between runs (one cache per feature spec)."""
        from headless.segment.workflow import FeatureSource, Segmenter

        settings = self.settings()
        spec = settings.features
        source = self._sources.get(spec)
        if source is None:
            key = (spec.backbone_name or "", spec.weights)
            source = FeatureSource(spec, backbone=self._backbones.get(key))
            self._sources = {k: v for k, v in list(self._sources.items())[-2:]}
            self._sources[spec] = source
        return Segmenter(settings, source)

    def _remember_backbone(self, segmenter: Any) -> None:
        bb = getattr(segmenter.source, "_backbone", None)
        if bb is not None:
            spec = segmenter.source.spec
            self._backbones[(spec.backbone_name or "", spec.weights)] = bb

    # ------------------------------------------------------------------ live training
    def _on_stroke(self, event: Any = None) -> None:
        self._timer.start()  # restarts: strokes within DEBOUNCE_MS coalesce
        worker = self._worker
        if worker is not None and worker is not True and self._phase == "fit":
            worker.quit()  # superseded by this stroke; the features stay cached

    def _on_strokes_settled(self) -> None:
        self._autosave(scribbles=True)
        if self.live_check.isChecked():
            self.train_now(live=True)

    def current_index(self) -> tuple[int, ...]:
        """Index of the slice on screen in the leading (stack) axes of the image."""
        img = self.image_layer()
        lead = len(self.spatial_shape(img)) - 2
        if lead <= 0:
            return ()
        step = self.viewer.dims.current_step
        offset = self.viewer.dims.ndim - (lead + 2)
        shape = self.spatial_shape(img)
        return tuple(int(np.clip(step[offset + i], 0, shape[i] - 1)) for i in range(lead))

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
        self._generation += 1
        generation = self._generation
        try:
            segmenter = self._segmenter()
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        previous = self.probe
        names = self.class_names()
        self.status.setText("training…")
        self._start(self._train_job(segmenter, image, scribbles, index, names, previous,
                                    generation, img.name),
                    self._show_result, "scribble segmentation")

    def _train_job(self, segmenter: Any, image: np.ndarray, scribbles: np.ndarray,
                   index: tuple[int, ...], names: dict[int, str], previous: Any,
                   generation: int, image_name: str):
        from headless.progress import Progress
        from headless.segment.probe import ProbeError
        from headless.segment.workflow import ScribbleError

        lead = len(index)
        image = np.asarray(image)
        flat_img = image.reshape((-1, *image.shape[lead:])) if lead else image[None]
        flat_scr = scribbles.reshape((-1, *scribbles.shape[lead:])) if lead else scribbles[None]
        current = int(np.ravel_multi_index(index, scribbles.shape[:lead])) if lead else 0
        pairs = [(flat_img[i], flat_scr[i]) for i in range(flat_scr.shape[0])
                 if flat_scr[i].any()]
        try:
            self._phase = "features"
            for i, (im, _) in enumerate(pairs + [(flat_img[current], None)]):
                if not segmenter.source.too_big(im):
                    yield Progress(i, len(pairs) + 1, "features")
                    yield from segmenter.source.features(im)
            self._remember_backbone(segmenter)
            self._phase = "fit"
            if previous is not None and previous.kind != segmenter.settings.classifier_name:
                previous = None
            probe = yield from segmenter.train(pairs, names, previous)
            seg = yield from segmenter.predict(flat_img[current], probe)
        except (ScribbleError, ProbeError) as exc:
            return _Notice(generation, str(exc))
        finally:
            self._phase = ""
        return _RunResult(generation, probe, [seg], index, image_name)

    def _start(self, gen: Any, on_result: Any, description: str) -> None:
        from napari_dinoseg._widgets.common.workers import start

        def finished() -> None:
            self._worker = None
            self._phase = ""
            if self._pending:
                self._pending = False
                if not self._timer.isActive():  # else the timer starts the next run
                    QTimer.singleShot(0, lambda: self.train_now(live=True))

        def failed(exc: BaseException) -> None:
            self.status.setText(f"error: {exc}")

        self._worker = True  # a run is in progress (also while it runs inline in sync mode)
        worker = start(gen, on_result, description, on_error=failed, on_finish=finished)
        if worker is not None:
            self._worker = worker
        elif self._worker is True:
            self._worker = None

    def _show_result(self, result: Any) -> None:
        if isinstance(result, _Notice):
            if result.generation >= self._shown_generation:
                self.status.setText(result.message)
            return
        if result.generation < self._shown_generation:
            return  # an older run finished after a newer one was shown
        self._shown_generation = result.generation
        self.probe = result.probe
        new = [v for v in result.probe.meta.class_values if v not in self._class_names]
        if new:  # values painted outside the class table get a name
            for v in new:
                self._class_names[int(v)] = f"class {v}"
            self._fill_class_table()
        self.show_segmentations(result.segmentations, result.slice_index, result.image_name)
        seg = result.segmentations[-1]
        parts = [f"{n} ({v})" for v, n in zip(seg.class_values, seg.class_names)]
        self.status.setText(
            f"{self.probe.kind} probe on {self.probe.meta.feature_mode} features "
            f"({self.probe.meta.feature_dim} channels): " + ", ".join(parts)
            + (" + CRF" if seg.refined else "")
        )
        self._autosave(segmentation=True, probe=True)

    def show_segmentations(self, segs: list[Any], index: tuple[int, ...] | None,
                           image_name: str) -> None:
        """Write segmentations into the segmentation / probability layers of ``image_name``."""
        from headless.segment.probe import class_values_array

        if image_name not in self.viewer.layers:
            return
        img = self.viewer.layers[image_name]
        shape = self.spatial_shape(img)
        lead = len(shape) - 2
        seg0 = segs[-1]
        self.last_segmentation = seg0
        dtype = class_values_array(seg0.class_values).dtype
        n_cls = len(seg0.class_values)
        meta = {META_KEY: {"role": "output", "image": image_name}, "dinoseg_output": True}
        seg_name, prob_name = f"{image_name} segmentation", f"{image_name} probabilities"
        scale, translate = tuple(img.scale[-len(shape):]), tuple(img.translate[-len(shape):])

        labels_layer = self.viewer.layers[seg_name] if seg_name in self.viewer.layers else None
        if labels_layer is None or tuple(labels_layer.data.shape) != shape or \
                not np.can_cast(dtype, labels_layer.data.dtype):
            if labels_layer is not None:
                self.viewer.layers.remove(labels_layer)
            labels_layer = self.viewer.add_labels(np.zeros(shape, dtype), name=seg_name,
                                                  scale=scale, translate=translate,
                                                  opacity=0.5, metadata=meta)
        prob_shape = (n_cls, *shape)
        prob_layer = self.viewer.layers[prob_name] if prob_name in self.viewer.layers else None
        if prob_layer is None or tuple(prob_layer.data.shape) != prob_shape:
            if prob_layer is not None:
                self.viewer.layers.remove(prob_layer)
            prob_layer = self.viewer.add_image(
                np.zeros(prob_shape, np.float32), name=prob_name, colormap="magma",
                contrast_limits=(0.0, 1.0), scale=(1.0, *scale), translate=(0.0, *translate),
                visible=False, metadata=meta,
            )
            prob_layer.axis_labels = ("class", *prob_layer.axis_labels[1:])
        if index is None:  # every slice
            for i, s in enumerate(segs):
                idx = np.unravel_index(i, shape[:lead]) if lead else ()
                labels_layer.data[idx] = s.labels
                prob_layer.data[(slice(None), *idx)] = np.moveaxis(s.proba, -1, 0)
        else:
            labels_layer.data[index] = seg0.labels
            prob_layer.data[(slice(None), *index)] = np.moveaxis(seg0.proba, -1, 0)
        labels_layer.refresh()
        prob_layer.refresh()
        try:
            values = list(seg0.class_values)
            labels_layer.features = {"index": [0, *values],
                                     "class": ["unlabelled", *seg0.class_names]}
        except Exception:  # noqa: BLE001 - names are a display nicety
            pass

    # ------------------------------------------------------------------ apply / probes
    def _require_probe(self) -> bool:
        from napari.utils.notifications import show_error

        if self.probe is None:
            show_error("No probe yet: paint scribbles of two classes (or load a probe) first.")
            return False
        return True

    def apply_to_stack(self) -> None:
        """Segment every slice of the chosen image with the current probe (in a worker)."""
        from napari.utils.notifications import show_error

        img = self.image_layer()
        if img is None:
            show_error("Choose an image first.")
            return
        if not self._require_probe():
            return
        data = img.data
        lead = len(self.spatial_shape(img)) - 2
        n_slices = int(np.prod(self.spatial_shape(img)[:lead])) if lead else 1
        segmenter = self._segmenter_for_probe()
        if segmenter is None:
            return
        probe = self.probe
        self._generation += 1
        generation = self._generation

        def job():
            from headless.progress import Progress

            image = np.asarray(data)
            flat = image.reshape((-1, *image.shape[lead:])) if lead else image[None]
            segs = []
            for i in range(flat.shape[0]):
                yield Progress(i, flat.shape[0], f"slice {i + 1}/{flat.shape[0]}")
                segs.append((yield from segmenter.predict(flat[i], probe)))
            self._remember_backbone(segmenter)
            return _RunResult(generation, probe, segs, None, img.name)

        if self._worker is not None:
            show_error("A segmentation is running; try again when it has finished.")
            return
        self.status.setText(f"applying the probe to {n_slices} slice(s)…")
        self._start(job(), self._show_result, f"apply probe to {img.name}")

    def apply_to_folder(self, folder: str | Path | None = None, out_dir: str | Path | None = None
                        ) -> None:
        """Segment every image of ``folder`` with the probe, writing label TIFFs to ``out_dir``."""
        from napari.utils.notifications import show_error, show_info

        from headless.segment.workflow import apply_to_all

        if not self._require_probe():
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Folder of images to segment")
            if not folder:
                return
        folder = Path(folder)
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(
                self, "Output folder for label TIFFs", str(folder))
            if not out_dir:
                return
        out_dir = Path(out_dir)
        segmenter = self._segmenter_for_probe()
        if segmenter is None:
            return
        if self._worker is not None:
            show_error("A segmentation is running; try again when it has finished.")
            return
        gen = apply_to_all(segmenter, self.probe, [folder], out_dir,
                           save_proba=self.probs_check.isChecked())

        def done(result: Any) -> None:
            self._remember_backbone(segmenter)
            self.last_apply = result
            text = f"wrote {len(result.written)} label file(s) to {out_dir}"
            if result.skipped:
                text += "; skipped " + "; ".join(f"{n}: {why}" for n, why in result.skipped)
            self.status.setText(text)
            show_info(text)

        self.status.setText(f"applying the probe to {folder}…")
        self._start(gen, done, f"apply probe to {folder.name}")

    def _segmenter_for_probe(self) -> Any:
        """A segmenter for the probe, or None (with a message) when the features differ."""
        from napari.utils.notifications import show_error

        from headless.segment.probe import ProbeMismatchError

        segmenter = self._segmenter()
        spec = segmenter.settings.features
        try:
            self.probe.check_compatible(spec.mode, spec.backbone_name,
                                        feature_options=spec.options())
        except ProbeMismatchError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return None
        return segmenter

    def save_probe(self, path: str | Path | None = None) -> Path | None:
        from napari.utils.notifications import show_error, show_info

        if not self._require_probe():
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save probe", "probe.npz",
                                                  "Probe (*.npz)")
            if not path:
                return None
        try:
            out = self.probe.save(path)
        except OSError as exc:
            show_error(f"could not save the probe: {exc}")
            return None
        show_info(f"saved probe {out}")
        return out

    def load_probe(self, path: str | Path | None = None) -> Any:
        """Load a probe and switch the feature controls to the features it was trained on."""
        from napari.utils.notifications import show_error, show_info

        from headless.segment.probe import ProbeError
        from headless.segment.probe import load_probe as _load

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load probe", "", "Probe (*.npz)")
            if not path:
                return None
        try:
            probe = _load(path)
        except ProbeError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return None
        self._adopt_probe(probe)
        show_info(f"loaded {probe.kind} probe trained on {probe.meta.feature_mode} features"
                  + (f" of {probe.meta.backbone}" if probe.meta.backbone else ""))
        return probe

    def _adopt_probe(self, probe: Any) -> None:
        m = probe.meta
        spec = self.feature_spec()
        if m.feature_mode != spec.mode or (m.backbone and m.backbone != spec.backbone_name):
            self.set_features(m.feature_mode, m.backbone)
            self.status.setText(
                f"switched features to {m.feature_mode}"
                + (f" of {m.backbone}" if m.backbone else "") + " to match the probe")
        opts = m.feature_options
        if "shifts" in opts:
            self.shifts_combo.setCurrentText(str(opts["shifts"]))
        if "flips" in opts:
            self.flips_check.setChecked(bool(opts["flips"]))
        idx = self.classifier_combo.findData(probe.kind)
        self.classifier_combo.setCurrentIndex(idx)
        for v, n in zip(m.class_values, m.class_names):
            self._class_names.setdefault(int(v), n)
        self._fill_class_table()
        self.probe = probe

    # ------------------------------------------------------------------ autosave / restore
    def project(self) -> tuple[Any, str] | None:
        """(ProjectStore, image file name) of the chosen image, or None if it has no file."""
        from headless.store import ProjectStore

        img = self.image_layer()
        path = getattr(getattr(img, "source", None), "path", None) if img is not None else None
        if not path or not Path(path).is_file():
            return None
        return ProjectStore.for_image(path), Path(path).name

    def _autosave(self, scribbles: bool = False, segmentation: bool = False,
                  probe: bool = False, classes: bool = False) -> None:
        if self._save_error:
            from napari.utils.notifications import show_warning

            show_warning(self._save_error)
            self.status.setText(self._save_error)
            self._save_error = ""
        if not self.autosave_check.isChecked():
            return
        ctx = self.project()
        if ctx is None:
            return
        store, name = ctx
        jobs: list[tuple[str, Any]] = []
        scr = self.scribble_layer()
        if (scribbles or classes) and scr is not None and \
                tuple(scr.data.shape) == self.spatial_shape():
            if scribbles:
                jobs.append(("scribbles", np.array(scr.data, copy=True)))
            jobs.append(("classes", {str(k): v for k, v in self._class_names.items()}))
        if segmentation:
            seg_name = f"{self.image_layer().name} segmentation"
            if seg_name in self.viewer.layers:
                jobs.append(("segmentation", np.array(self.viewer.layers[seg_name].data)))
        if probe and self.probe is not None:
            jobs.append(("probe", self.probe))
        if not jobs:
            return

        def write() -> None:
            for kind, obj in jobs:
                if kind == "scribbles":
                    store.save_labels(name, SCRIBBLES_FILE, obj)
                elif kind == "segmentation":
                    store.save_labels(name, SEGMENTATION_FILE, obj)
                elif kind == "classes":
                    store.save_json(name, CLASSES_FILE, obj)
                elif kind == "probe":
                    obj.save(store.path(name, PROBE_FILE))

        if os.environ.get("DINOSEG_SYNC", "0") == "1":
            self._write_safely(write)
        else:
            self._saves = [f for f in self._saves if not f.done()]
            self._saves.append(self._saver.submit(self._write_safely, write))

    def _write_safely(self, write: Any) -> None:
        try:
            write()
        except OSError as exc:  # a full disk or a read-only folder: said on the next save
            self._save_error = f"autosave failed: {exc}"

    def flush_saves(self, timeout: float = 30.0) -> None:
        """Wait for pending autosaves (tests, and before closing)."""
        for f in list(self._saves):
            f.result(timeout=timeout)
        self._saves = []

    def restore(self) -> bool:
        """Bring back the saved scribbles, class names, segmentation and probe of the image."""
        from headless.segment.probe import ProbeError, load_probe

        ctx = self.project()
        img = self.image_layer()
        if ctx is None or img is None:
            return False
        store, name = ctx
        shape = self.spatial_shape(img)
        restored = []
        classes = store.load_json(name, CLASSES_FILE)
        if isinstance(classes, dict):
            try:
                self._class_names = {int(k): str(v) for k, v in classes.items()}
                self._fill_class_table()
            except ValueError:
                pass
        scr_name = f"{img.name} scribbles"
        scribbles = _load_labels_safely(store, name, SCRIBBLES_FILE)
        if scribbles is not None and tuple(scribbles.shape) == shape and \
                scr_name not in self.viewer.layers:
            layer = self.viewer.add_labels(
                scribbles, name=scr_name, scale=img.scale[-len(shape):],
                translate=img.translate[-len(shape):],
                metadata={META_KEY: {"role": "scribbles", "image": img.name}}, opacity=0.8)
            self._apply_class_names(layer)
            self._refresh_layers()
            self.scribble_combo.setCurrentText(scr_name)
            self._listen(layer)
            restored.append("scribbles")
        seg_name = f"{img.name} segmentation"
        seg = _load_labels_safely(store, name, SEGMENTATION_FILE)
        if seg is not None and tuple(seg.shape) == shape and seg_name not in self.viewer.layers:
            self.viewer.add_labels(
                seg, name=seg_name, scale=img.scale[-len(shape):],
                translate=img.translate[-len(shape):], opacity=0.5,
                metadata={META_KEY: {"role": "output", "image": img.name},
                          "dinoseg_output": True})
            restored.append("segmentation")
        probe_path = store.path(name, PROBE_FILE)
        if probe_path.exists() and self.probe is None:
            try:
                self._adopt_probe(load_probe(probe_path))
                restored.append("probe")
            except ProbeError as exc:
                self.status.setText(f"saved probe not restored: {exc}")
        if restored:
            self.status.setText(f"restored {', '.join(restored)} from {store.image_dir(name)}")
        return bool(restored)


def _load_labels_safely(store: Any, name: str, filename: str) -> np.ndarray | None:
    try:
        return store.load_labels(name, filename)
    except Exception:  # noqa: BLE001 - a damaged file is reported by not restoring it
        return None
