"""The object-boxes dock: compute boxes without labels, curate them image by image, export.

Work flow: open a folder of images; compute boxes for the current image or the whole folder (in
a worker, with a progress bar); fix them in the Shapes layer (move, resize, add, delete). Every
change is saved at once to the folder's project (``.dinoseg/images/<name>/boxes.json``, written
to a temporary file and renamed) and restored when the image is reopened. Each image shows its
status (automatic / edited / verified); "Mark verified" records that it was checked. Export
writes the curated set as COCO, VOC or CSV. The engine is :mod:`headless.boxes.compute` and
:mod:`headless.boxes.curation`, the same code as ``dinoseg boxes`` / ``dinoseg boxes-export``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import (
    ModelCache,
    browse_checkpoint,
    load_backbone_for_dock,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

STATUS_COLORS = {"none": "#9a9a9a", "automatic": "#ffb74d", "edited": "#4fc3f7",
                 "verified": "#81c784"}
DEVICES = ("cpu", "cuda", "mps")
EXPORT_FILTERS = {"coco": "COCO JSON (*.json)", "csv": "CSV (*.csv)"}


class BoxesWidget(QWidget):
    """Unsupervised object boxes (LOST, TokenCut, MOST, DINO attention) and their curation."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from headless.boxes.compute import METHOD_TITLES, METHODS
        from headless.features.backbones import list_backbones

        self.viewer = napari_viewer
        self._backbones = ModelCache(load_backbone_for_dock)
        self._worker: Any = None
        self._folder: Path | None = None
        self._images: list[Path] = []
        self._index: int | None = None
        self._curation: Any = None  # BoxCuration of the current folder / image
        self._current: dict[str, Any] | None = None  # name, path, size, array
        self._image_layer: Any = None
        self._own_image_layer = False
        self._shapes_layer: Any = None
        self._updating = False
        self._n_before = 0
        self._last_saved: list[Any] | None = None

        # -- method and backbone --
        self.method_combo = QComboBox()
        for m in METHODS:
            self.method_combo.addItem(METHOD_TITLES.get(m, m), m)
        self.which_combo = QComboBox()
        self.which_combo.addItems(["k", "q", "v"])
        self.which_combo.setToolTip("last-block keys (k, the papers' choice), queries or values")
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(list_backbones())
        self.backbone_combo.setCurrentText("dino_vits16")
        self.weights_combo = QComboBox()
        self.weights_combo.setEditable(True)
        self.weights_combo.addItems(["official", "random"])
        self.weights_combo.setToolTip("'official' (hub cache / local checkpoint), 'random' "
                                      "(untrained, for testing) or a checkpoint file")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.setToolTip("choose a checkpoint file")
        browse.clicked.connect(self._browse_weights)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_combo, 1)
        weights_row.addWidget(browse)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 4096)
        self.size_spin.setSingleStep(16)
        self.size_spin.setSpecialValueText("original")
        self.size_spin.setToolTip("resize so the longer side is this many pixels (0 = original "
                                  "size, as the papers' VOC evaluation); boxes always refer to "
                                  "the original image")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.overwrite_check = QCheckBox("replace edited / verified boxes")
        self.overwrite_check.setToolTip("off: images whose boxes you edited keep them (the "
                                        "safe default); on: recompute them too (the previous "
                                        "version is kept in boxes.previous.json)")
        self.compute_image_btn = QPushButton("Compute this image")
        self.compute_image_btn.clicked.connect(self.compute_current)
        self.compute_all_btn = QPushButton("Compute whole folder")
        self.compute_all_btn.clicked.connect(self.compute_all)

        form = QFormLayout()
        form.addRow("method", self.method_combo)
        form.addRow("features", self.which_combo)
        form.addRow("backbone", self.backbone_combo)
        form.addRow("weights", weights_row)
        form.addRow("input size", self.size_spin)
        form.addRow("device", self.device_combo)
        form.addRow("", self.overwrite_check)
        compute_row = QHBoxLayout()
        compute_row.addWidget(self.compute_image_btn)
        compute_row.addWidget(self.compute_all_btn)

        # -- folder browser --
        self.open_folder_btn = QPushButton("Open folder…")
        self.open_folder_btn.clicked.connect(self._choose_folder)
        self.folder_label = QLabel("no folder")
        self.folder_label.setWordWrap(True)
        self.image_list = QListWidget()
        self.image_list.setMinimumHeight(120)
        self.image_list.currentRowChanged.connect(self._on_row_changed)
        self.prev_btn = QPushButton("◀ Previous")
        self.prev_btn.clicked.connect(self.previous_image)
        self.next_btn = QPushButton("Next ▶")
        self.next_btn.clicked.connect(self.next_image)
        self.verify_btn = QPushButton("Mark verified")
        self.verify_btn.clicked.connect(self.mark_verified)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_btn)
        nav.addWidget(self.next_btn)
        nav.addWidget(self.verify_btn)
        folder_box = QGroupBox("Images")
        fl = QVBoxLayout(folder_box)
        fl.addWidget(self.open_folder_btn)
        fl.addWidget(self.folder_label)
        fl.addWidget(self.image_list)
        fl.addLayout(nav)

        # -- export --
        self.export_coco_btn = QPushButton("COCO…")
        self.export_voc_btn = QPushButton("VOC…")
        self.export_csv_btn = QPushButton("CSV…")
        self.export_coco_btn.clicked.connect(lambda: self._export_dialog("coco"))
        self.export_voc_btn.clicked.connect(lambda: self._export_dialog("voc"))
        self.export_csv_btn.clicked.connect(lambda: self._export_dialog("csv"))
        export_box = QGroupBox("Export curated boxes")
        el = QHBoxLayout(export_box)
        for b in (self.export_coco_btn, self.export_voc_btn, self.export_csv_btn):
            el.addWidget(b)

        self.status = QLabel("")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(compute_row)
        layout.addWidget(folder_box)
        layout.addWidget(export_box)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._update_buttons()

    # -- properties used by tests and scripts --------------------------------------------------
    @property
    def current_image(self) -> str | None:
        return None if self._current is None else self._current["name"]

    @property
    def shapes_layer(self) -> Any:
        return self._shapes_layer

    @property
    def curation(self) -> Any:
        return self._curation

    def current_boxes(self) -> list[Any]:
        """The boxes of the current image as the Shapes layer holds them now."""
        from napari_dinoseg._widgets.boxes.layers import layer_to_boxes

        if self._shapes_layer is None:
            return []
        return layer_to_boxes(self._shapes_layer)

    # -- small helpers --------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _browse_weights(self) -> None:
        path = browse_checkpoint(self)
        if path:
            self.weights_combo.setCurrentText(path)

    def backbone_key(self) -> tuple[str, str, str]:
        return (self.backbone_combo.currentText(),
                self.weights_combo.currentText().strip() or "official",
                self.device_combo.currentText())

    def _backbone(self, key: tuple[str, str, str]) -> Any:
        """The backbone, loaded once per (name, weights, device); called in the worker."""
        return self._backbones.get(key)

    def _options(self) -> dict[str, Any]:
        return {"method": self.method_combo.currentData(),
                "which": self.which_combo.currentText(),
                "size": self.size_spin.value() or None}

    def _busy(self) -> bool:
        return self._worker is not None

    def _update_buttons(self) -> None:
        busy = self._busy()
        self.compute_image_btn.setEnabled(not busy)
        self.compute_all_btn.setEnabled(not busy and bool(self._images))
        has_img = self._current is not None
        self.verify_btn.setEnabled(has_img)
        n = len(self._images)
        self.prev_btn.setEnabled(n > 0 and (self._index or 0) > 0)
        self.next_btn.setEnabled(n > 0 and self._index is not None and self._index < n - 1)

    # -- folder browser -------------------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder: str | Path) -> None:
        """Browse a folder of images; its project (``.dinoseg``) holds the saved boxes."""
        from napari.utils.notifications import show_error, show_info

        from headless.boxes.curation import BoxCuration
        from headless.images import ImageError, list_images

        try:
            listing = list_images(folder)
        except ImageError as exc:
            show_error(str(exc))
            return
        self._folder = Path(folder)
        self._images = listing.images
        self._curation = BoxCuration.for_folder(folder)
        self._index = None
        self.folder_label.setText(f"{self._folder} ({len(self._images)} images)")
        if listing.skipped:
            show_info(f"{len(listing.skipped)} non-image file(s) skipped: "
                      + ", ".join(p.name for p in listing.skipped[:10]))
        self.refresh_list()
        if self._images:
            self.open_image(0)
        else:
            show_info(f"{folder}: no images found")
        self._update_buttons()

    def refresh_list(self) -> None:
        """Rebuild the image list with each image's status."""
        statuses = self._statuses()
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for p in self._images:
            st = statuses.get(p.name, "none")
            item = QListWidgetItem(f"{p.name}   [{st if st != 'none' else '-'}]")
            item.setForeground(QColor(STATUS_COLORS.get(st, "#ffffff")))
            item.setToolTip(f"{p}\nstatus: {st}")
            self.image_list.addItem(item)
        if self._index is not None:
            self.image_list.setCurrentRow(self._index)
        self.image_list.blockSignals(False)

    def _statuses(self) -> dict[str, str]:
        if self._curation is None:
            return {}
        return self._curation.statuses(p.name for p in self._images)

    def status_of(self, name: str) -> str:
        """The saved status of an image of the folder ('none' when nothing is saved)."""
        return "none" if self._curation is None else self._curation.status(name)

    def _refresh_item(self, name: str) -> None:
        for i, p in enumerate(self._images):
            if p.name == name:
                st = self.status_of(name)
                item = self.image_list.item(i)
                if item is not None:
                    item.setText(f"{p.name}   [{st if st != 'none' else '-'}]")
                    item.setForeground(QColor(STATUS_COLORS.get(st, "#ffffff")))
                break

    def _on_row_changed(self, row: int) -> None:
        if 0 <= row < len(self._images) and row != self._index:
            self.open_image(row)

    def next_image(self) -> None:
        if self._images and self._index is not None and self._index < len(self._images) - 1:
            self.open_image(self._index + 1)

    def previous_image(self) -> None:
        if self._images and self._index is not None and self._index > 0:
            self.open_image(self._index - 1)

    def open_image(self, index: int | str | Path) -> None:
        """Show an image of the folder with its saved boxes (restored exactly as left)."""
        from napari.utils.notifications import show_error

        from headless.boxes.compute import image_size
        from headless.images import ImageError, read_image

        if isinstance(index, (str, Path)):
            names = [p.name for p in self._images]
            name = Path(index).name
            if name not in names:
                show_error(f"{index} is not an image of the open folder")
                return
            index = names.index(name)
        path = self._images[index]
        try:
            arr = read_image(path)
            size = image_size(arr)
        except ImageError as exc:
            show_error(str(exc))
            return
        self._remove_own_layers()
        self._index = index
        self._current = {"name": path.name, "path": path, "size": size}
        self._image_layer = self.viewer.add_image(arr, name=path.name)
        self._own_image_layer = True
        self._show_saved()
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(index)
        self.image_list.blockSignals(False)
        self.viewer.reset_view()
        self._update_buttons()

    def _show_saved(self) -> None:
        """(Re)build the Shapes layer of the current image from its saved state."""
        from napari.utils.notifications import show_error

        from headless.boxes import BoxFormatError

        name = self._current["name"]
        state = None
        if self._curation is not None:
            try:
                state = self._curation.load(name)
            except BoxFormatError as exc:
                show_error(f"{exc} (it will be kept aside at the next save)")
        boxes = state.boxes if state is not None else []
        self._set_shapes(boxes)
        st = state.status if state is not None else "none"
        self._say(f"{name}: {len(boxes)} box(es), {st}")

    def _remove_own_layers(self) -> None:
        self._disconnect_shapes()
        for layer, own in ((self._shapes_layer, True), (self._image_layer, self._own_image_layer)):
            if layer is not None and own and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._shapes_layer = None
        self._image_layer = None
        self._own_image_layer = False
        self._last_saved = None

    # -- the Shapes layer and the user's edits --------------------------------------------------
    def _set_shapes(self, boxes: list[Any]) -> None:
        from napari_dinoseg._widgets.boxes.layers import image_layer_data

        cur = self._current
        data, kwargs, _ = image_layer_data(cur["name"], boxes, cur["size"])
        self._updating = True
        try:
            self._disconnect_shapes()
            if self._shapes_layer is not None and self._shapes_layer in self.viewer.layers:
                self.viewer.layers.remove(self._shapes_layer)
            if self._image_layer is not None:
                kwargs["scale"] = tuple(self._image_layer.scale[-2:])
                kwargs["translate"] = tuple(self._image_layer.translate[-2:])
            layer = self.viewer.add_shapes(data, ndim=2, **kwargs)
            layer.mode = "select"
            self._shapes_layer = layer
            layer.events.data.connect(self._on_data)
            layer.events.features.connect(self._on_features)
            # napari holds vertices as float32: compare later edits with what the layer holds,
            # so that a non-edit (a selection) never saves rounded boxes as 'edited'
            self._last_saved = self.current_boxes()
        finally:
            self._updating = False

    def _disconnect_shapes(self) -> None:
        layer = self._shapes_layer
        if layer is None:
            return
        for emitter, cb in ((layer.events.data, self._on_data),
                            (layer.events.features, self._on_features)):
            try:
                emitter.disconnect(cb)
            except (TypeError, RuntimeError, ValueError):
                pass

    def _on_data(self, event: Any) -> None:
        if self._updating:
            return
        action = str(getattr(event, "action", ""))
        if action == "adding":
            self._n_before = self._shapes_layer.nshapes
            return
        if action not in ("added", "changed", "removed"):
            return
        if action == "added":
            self._mark_new_shapes(self._n_before)
        self.save_current()

    def _on_features(self, event: Any = None) -> None:
        if not self._updating:
            self.save_current()

    def _mark_new_shapes(self, first: int) -> None:
        """Shapes the user added are user boxes (napari copies the selected shape's features)."""
        from napari_dinoseg._widgets.boxes.layers import DEFAULT_FEATURES

        layer = self._shapes_layer
        n = layer.nshapes
        if first >= n:
            return
        df = layer.features.copy()
        for col, value in DEFAULT_FEATURES.items():
            if col in df.columns:
                df.loc[first:n - 1, col] = value
        self._updating = True
        try:
            layer.features = df
            layer.refresh_text()
        finally:
            self._updating = False

    def save_current(self) -> bool:
        """Save the Shapes layer's boxes as the current image's truth (status edited)."""
        from napari.utils.notifications import show_error, show_warning

        if self._current is None or self._shapes_layer is None:
            return False
        boxes = self.current_boxes()
        if self._last_saved is not None and boxes == self._last_saved:
            return False
        if self._curation is None:
            show_warning(f"{self._current['name']} has no file on disk: its boxes are kept in "
                         "the layer only (export them, or open the image's folder)")
            self._last_saved = boxes
            return False
        try:
            state = self._curation.save_edit(self._current["name"], boxes,
                                             self._current["size"])
        except (OSError, ValueError) as exc:
            show_error(f"could not save the boxes of {self._current['name']}: {exc}; they stay "
                       "in the layer")
            return False
        self._last_saved = boxes
        self._refresh_item(self._current["name"])
        self._say(f"{state.image}: {len(state.boxes)} box(es), edited (saved)")
        return True

    def mark_verified(self) -> None:
        """Record that the current image's boxes were checked (saving them as they are now)."""
        from napari.utils.notifications import show_error

        if self._current is None:
            show_error("open an image first")
            return
        if self._curation is None:
            show_error(f"{self._current['name']} has no file on disk; nothing to verify")
            return
        try:
            state = self._curation.mark_verified(self._current["name"], self.current_boxes(),
                                                 self._current["size"])
        except (OSError, ValueError) as exc:
            show_error(f"could not save: {exc}")
            return
        self._last_saved = list(state.boxes)
        self._refresh_item(state.image)
        self._say(f"{state.image}: {len(state.boxes)} box(es), verified")

    # -- compute -------------------------------------------------------------------------------
    def _adopt_active_layer(self) -> bool:
        """Without a folder, take the selected (or first) image layer as the current image."""
        from napari.layers import Image
        from napari.utils.notifications import show_error

        from headless.boxes.compute import image_size
        from headless.boxes.curation import BoxCuration
        from headless.images import ImageError
        from napari_dinoseg._widgets.common.layers import current_slice

        active = self.viewer.layers.selection.active
        layer = active if isinstance(active, Image) else next(
            (ly for ly in self.viewer.layers if isinstance(ly, Image)), None)
        if layer is None:
            show_error("Open a folder of images (or an image) first.")
            return False
        arr = current_slice(layer, self.viewer)
        try:
            size = image_size(arr)
        except ImageError as exc:
            show_error(str(exc))
            return False
        src = getattr(getattr(layer, "source", None), "path", None)
        path = Path(src) if src else None
        self._remove_own_layers()
        self._image_layer = layer
        self._own_image_layer = False
        name = path.name if path is not None else layer.name
        self._current = {"name": name, "path": path, "size": size, "array": arr}
        self._curation = BoxCuration.for_image(path) if path is not None else None
        self._show_saved()
        return True

    def compute_current(self) -> None:
        """Boxes for the current image, in a worker; they replace its automatic boxes."""
        from napari.utils.notifications import show_warning

        from headless.boxes.compute import compute_boxes
        from headless.images import read_image

        if self._busy():
            return
        if self._current is None and not self._adopt_active_layer():
            return
        cur = dict(self._current)
        name = cur["name"]
        overwrite = self.overwrite_check.isChecked()
        status = self.status_of(name)
        if status in ("edited", "verified") and not overwrite:
            show_warning(f"{name} has {status} boxes; tick 'replace edited / verified boxes' "
                         "to recompute them")
            return
        opts = self._options()
        key = self.backbone_key()
        arr = cur.get("array")

        def work():
            image = arr if arr is not None else read_image(cur["path"])
            backbone = self._backbone(key)
            return (yield from compute_boxes([(name, image)], opts["method"], backbone=backbone,
                                             size=opts["size"], which=opts["which"]))

        def done(run: Any) -> None:
            self._on_single_result(cur, run, overwrite, opts, key)

        self._start(work(), done, f"{opts['method']} boxes of {name}")

    def _on_single_result(self, cur: dict, run: Any, overwrite: bool, opts: dict,
                          key: tuple) -> None:
        from napari.utils.notifications import show_error, show_info, show_warning

        name = cur["name"]
        if name in run.failures:
            show_error(f"{name}: {run.failures[name]}")
            return
        boxes = run.boxset.boxes.get(name, [])
        if not boxes:
            show_info(f"{opts['method']}: no foreground found in {name} (no box)")
        same_image = self._current is not None and self._current["name"] == name
        if self._curation is not None and same_image:
            state, written = self._curation.save_automatic(
                name, boxes, cur["size"], opts["method"], self._details(opts, key, run),
                overwrite=overwrite)
            if not written:
                show_warning(f"{name}: you edited the boxes while they were computed; your "
                             "edits were kept")
                return
            self._refresh_item(name)
        if same_image:
            self._set_shapes(list(boxes))
            self._say(f"{name}: {len(boxes)} box(es) from {opts['method']}, "
                      f"{run.backbone_label}")

    @staticmethod
    def _details(opts: dict, key: tuple, run: Any) -> dict[str, Any]:
        return {"backbone": key[0], "weights": run.backbone_label, "which": opts["which"],
                "size": opts["size"]}

    def compute_all(self) -> None:
        """Boxes for every image of the folder, in a worker; each saved as soon as computed.

        Images whose boxes were edited or verified keep them unless 'replace' is ticked.
        """
        from napari.utils.notifications import show_error

        from headless.boxes.compute import ImageBoxesProgress, compute_boxes

        if self._busy():
            return
        if not self._images or self._curation is None:
            show_error("Open a folder of images first.")
            return
        images = list(self._images)
        overwrite = self.overwrite_check.isChecked()
        opts = self._options()
        key = self.backbone_key()
        curation = self._curation
        skipped: list[str] = []

        def work():
            backbone = self._backbone(key)
            gen = compute_boxes(images, opts["method"], backbone=backbone, size=opts["size"],
                                which=opts["which"])
            details = {"backbone": key[0], "which": opts["which"], "size": opts["size"]}
            try:
                while True:
                    item = next(gen)
                    if isinstance(item, ImageBoxesProgress) and item.boxes is not None:
                        _, written = curation.save_automatic(
                            item.image, item.boxes, item.size, opts["method"], details,
                            overwrite=overwrite)
                        if not written:
                            skipped.append(item.image)
                    yield item
            except StopIteration as stop:
                return stop.value

        def done(run: Any) -> None:
            self._on_folder_result(run, skipped, opts)

        self._start(work(), done, f"{opts['method']} boxes of {len(images)} images")

    def _on_folder_result(self, run: Any, skipped: list[str], opts: dict) -> None:
        from napari.utils.notifications import show_info, show_warning

        self.refresh_list()
        n = len(run.boxset.images)
        msg = f"{opts['method']}: {run.boxset.n_boxes} box(es) on {n} image(s)"
        if skipped:
            msg += f"; {len(skipped)} edited/verified image(s) kept their boxes"
        if run.empty:
            msg += f"; no foreground in {len(run.empty)}: {', '.join(run.empty[:5])}"
        show_info(msg)
        if run.failures:
            show_warning("failed: " + "; ".join(f"{k}: {v}" for k, v in
                                                 list(run.failures.items())[:5]))
        self._say(msg)
        if self._current is not None and self._current["name"] in run.boxset.boxes \
                and self._current["name"] not in skipped:
            self._show_saved()

    def _start(self, gen: Any, on_result: Any, description: str) -> None:
        from napari_dinoseg._widgets.common.workers import start

        def finished() -> None:
            self._worker = None
            self._update_buttons()

        self._worker = True  # marks busy until the worker (or the inline run) finishes
        self._update_buttons()
        worker = start(gen, on_result, description, on_finish=finished)
        if worker is not None and self._worker is True:
            self._worker = worker

    # -- export --------------------------------------------------------------------------------
    def _export_dialog(self, fmt: str) -> None:
        start = str(self._folder or Path.home())
        if fmt == "voc":
            path = QFileDialog.getExistingDirectory(self, "Folder for VOC .xml files", start)
        else:
            path, _ = QFileDialog.getSaveFileName(self, f"Export {fmt.upper()}", start,
                                                  EXPORT_FILTERS[fmt])
        if path:
            self.export(fmt, path)

    def export(self, fmt: str, path: str | Path) -> list[Path]:
        """Write the folder's saved boxes (or the current image's) as COCO, VOC or CSV."""
        from napari.utils.notifications import show_error, show_info

        from headless.boxes import BoxSet, write_boxes

        try:
            if self._curation is not None and self._images:
                boxset = self._curation.to_boxset([p.name for p in self._images])
            elif self._current is not None:
                boxset = BoxSet()
                boxset.add(self._current["name"], self.current_boxes(), self._current["size"])
            else:
                show_error("nothing to export: open a folder or an image first")
                return []
            if not boxset.images:
                show_error("no saved boxes to export yet")
                return []
            target = Path(path)
            if fmt == "voc" and target.suffix.lower() == ".xml" and len(boxset.images) > 1:
                target = target.with_suffix("")
            written = write_boxes(target, boxset, fmt)
        except (OSError, ValueError) as exc:
            show_error(f"export failed: {exc}")
            return []
        msg = (f"exported {boxset.n_boxes} box(es) on {len(boxset.images)} image(s) to "
               f"{target}")
        show_info(msg)
        self._say(msg)
        return written
