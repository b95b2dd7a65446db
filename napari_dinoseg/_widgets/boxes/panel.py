"""The object-boxes dock: compute boxes without labels, curate them image by image, export.

Work flow: open a folder of images; compute boxes for the current image or the whole folder (in
a worker, with a progress bar); fix them in the Shapes layer (move, resize, add, delete). Every
change is saved at once to the folder's project (``.dinoseg/images/<name>/boxes.json``, written
to a temporary file and renamed) and restored when the image is reopened. Each image shows its
status (automatic / edited / verified) and the uncertainty of its automatic boxes; the list
sorts worst first (the images most in need of a human on top, :mod:`headless.qc`), filters by
status, and "Next to check" steps through the images not verified yet; "Mark verified" records
that an image was checked and so moves it out of the queue. Export
writes the curated set as COCO, VOC or CSV. The engine is :mod:`headless.boxes.compute` and
:mod:`headless.boxes.curation`, the same code as ``dinoseg boxes`` / ``dinoseg boxes-export``.
This module is the Qt side; the dock's state is :mod:`.controller`, the Shapes layer and the
user's edits on it :mod:`.shapes_editor`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from napari_dinoseg._widgets.boxes.batch_job import attach_boxes_job
from napari_dinoseg._widgets.boxes.controller import BoxesController, NothingToExport
from napari_dinoseg._widgets.boxes.image_list import STATUS_COLORS, ImageList
from napari_dinoseg._widgets.boxes.settings import DEVICES, WEIGHTS_TIP, BoxSettings
from napari_dinoseg._widgets.boxes.shapes_editor import ShapesEditor
from napari_dinoseg._widgets.common.layer_picking import active_image_layer, source_path
from napari_dinoseg._widgets.common.notices import notify_all
from napari_dinoseg._widgets.common.scrolling import scroll_layout
from napari_dinoseg._widgets.common.warmup import warm_up_glyphs_later, warm_up_later
from napari_dinoseg._widgets.common.workers import WorkerSlot

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["DEVICES", "EXPORT_FILTERS", "STATUS_COLORS", "WEIGHTS_TIP", "BoxesWidget"]

EXPORT_FILTERS = {"coco": "COCO JSON (*.json)", "csv": "CSV (*.csv)"}


class BoxesWidget(QWidget):
    """Unsupervised object boxes (LOST, TokenCut, MOST, DINO attention) and their curation."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = BoxesController()
        self.shapes = ShapesEditor(self.viewer, self.save_current)
        warm_up_later("shapes")  # the first Shapes layer's numba compile, off the GUI thread
        warm_up_glyphs_later(self.viewer)  # its captions' glyphs, a few per turn
        self._jobs = WorkerSlot(on_busy=lambda busy: self._update_buttons())
        self._box_writes = 0  # computes that saved boxes (an image read before one is stale)

        # -- method and backbone --
        self.settings = BoxSettings(self)
        self.model_fields = self.settings.model_fields
        self._jobs.weights_fields = [self.model_fields]
        self.method_combo = self.settings.method_combo
        self.which_combo = self.settings.which_combo
        self.backbone_combo = self.model_fields.name_combo
        self.weights_combo = self.model_fields.weights
        self.device_combo = self.model_fields.device_combo
        self.size_spin = self.settings.size_spin
        self.overwrite_check = self.settings.overwrite_check
        self.compute_image_btn = QPushButton("Compute this image")
        self.compute_image_btn.clicked.connect(self.compute_current)
        self.compute_all_btn = QPushButton("Compute whole folder")
        self.compute_all_btn.clicked.connect(self.compute_all)
        compute_row = QHBoxLayout()
        compute_row.addWidget(self.compute_image_btn)
        compute_row.addWidget(self.compute_all_btn)

        # -- folder browser --
        self.folder_box = ImageList()
        self.open_folder_btn = self.folder_box.open_folder_btn
        self.folder_label = self.folder_box.folder_label
        self.image_list = self.folder_box.image_list
        self.prev_btn = self.folder_box.prev_btn
        self.next_btn = self.folder_box.next_btn
        self.verify_btn = self.folder_box.verify_btn
        self.open_folder_btn.clicked.connect(self._choose_folder)
        self.image_list.currentRowChanged.connect(self._on_row_changed)
        self.prev_btn.clicked.connect(self.previous_image)
        self.next_btn.clicked.connect(self.next_image)
        self.verify_btn.clicked.connect(self.mark_verified)
        self.sort_combo = self.folder_box.sort_combo
        self.filter_combo = self.folder_box.filter_combo
        self.next_check_btn = self.folder_box.next_check_btn
        self.sort_combo.currentTextChanged.connect(self._on_queue_view)
        self.filter_combo.currentTextChanged.connect(self._on_queue_view)
        self.next_check_btn.clicked.connect(self.next_to_check)

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

        layout = scroll_layout(self)
        layout.addLayout(self.settings.form)
        layout.addLayout(compute_row)
        layout.addWidget(self.folder_box)
        layout.addWidget(export_box)
        layout.addWidget(attach_boxes_job(self))  # the whole folder as a batch job
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._update_buttons()

    # -- properties used by tests and scripts --------------------------------------------------
    @property
    def current_image(self) -> str | None:
        return self.controller.current_name

    @property
    def shapes_layer(self) -> Any:
        return self.shapes.layer

    @property
    def curation(self) -> Any:
        return self.controller.curation

    @property
    def _worker(self) -> Any:
        return self._jobs.worker

    def current_boxes(self) -> list[Any]:
        """The boxes of the current image as the Shapes layer holds them now."""
        return self.shapes.boxes()

    # -- small helpers --------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.status.setText(text)

    def backbone_key(self) -> tuple[str, str, str]:
        return self.settings.key()

    def _options(self) -> dict[str, Any]:
        return self.settings.options()

    def _update_buttons(self) -> None:
        c = self.controller
        busy = self._jobs.busy
        self.compute_image_btn.setEnabled(not busy)
        self.compute_all_btn.setEnabled(not busy and bool(c.images))
        self.verify_btn.setEnabled(c.current is not None)
        self.prev_btn.setEnabled(c.can_go_back())
        self.next_btn.setEnabled(c.can_go_on())
        self.next_check_btn.setEnabled(c.next_to_check_index() is not None)

    # -- folder browser -------------------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder: str | Path) -> None:
        """Browse a folder of images; its project (``.dinoseg``) holds the saved boxes."""
        from napari.utils.notifications import show_error, show_info

        from headless.images import ImageError

        try:
            listing = self.controller.open_folder(folder)
        except ImageError as exc:
            show_error(str(exc))
            return
        images = self.controller.images
        self.folder_label.setText(f"{self.controller.folder} ({len(images)} images)")
        if listing.skipped:
            show_info(f"{len(listing.skipped)} non-image file(s) skipped: "
                      + ", ".join(p.name for p in listing.skipped[:10]))
        self._worst_first_pending = bool(images)  # once the queue is read: open the worst
        self._queue_known = False
        self.refresh_list()
        if images:
            self.open_image(0)
            self._open_worst_once()  # the queue is known already when read inline
        else:
            show_info(f"{folder}: no images found")
        self._update_buttons()

    def refresh_list(self) -> None:
        """Show the queue as known now, and read it again from the project in a worker."""
        self.show_queue()
        if self.controller.folder is None:
            return
        from napari_dinoseg._widgets.common.workers import start

        self._queue_reads = getattr(self, "_queue_reads", 0) + 1
        token, folder = self._queue_reads, self.controller.folder

        def read(result: Any) -> None:
            if token == self._queue_reads and folder == self.controller.folder:
                self.controller.queue.set_rows(result)
                self._queue_known = True
                self.show_queue()
                self._open_worst_once()

        start(self.controller.queue_job(), read, "sorting images by uncertainty")

    def _open_worst_once(self) -> None:
        """A folder just opened with saved QC records, sorted worst first: show the image that
        most needs a human (unless the user has already moved on from the first image)."""
        if not getattr(self, "_worst_first_pending", False) or \
                not getattr(self, "_queue_known", False) or \
                self.controller.shown_name() is None:  # wait for both the queue and the image
            return
        self._worst_first_pending = False
        q, images = self.controller.queue, self.controller.images
        if q.sort != "worst first" or not images or \
                self.controller.shown_name() != images[0].name:
            return
        worst = q.next_to_check(None)
        row = q.rows.get(worst) if worst else None
        if row is not None and row.uncertainty is not None and worst != images[0].name:
            self.open_image(worst)

    def show_queue(self) -> None:
        """Fill the list from the queue in memory (sorted and filtered as chosen)."""
        q = self.controller.queue
        rows = q.visible()
        self.folder_box.fill(rows, self.current_image)
        self.folder_box.queue_label.setText(
            f"{q.to_check()} of {len(q.rows)} image(s) to check; {len(rows)} shown"
            if q.rows else "")
        self._update_buttons()

    def _show_row(self, name: str) -> None:
        """After an edit (same place in the order): redraw one row, else the whole list."""
        row = self.controller.queue.row(name)
        if row is None or not self.folder_box.update_row(row, self.controller.queue.shows(row)):
            self.show_queue()

    def _on_queue_view(self, _text: str = "") -> None:
        self.controller.queue.sort = self.sort_combo.currentText()
        self.controller.queue.show = self.filter_combo.currentText()
        self.show_queue()

    def status_of(self, name: str) -> str:
        """The saved status of an image of the folder ('none' when nothing is saved)."""
        return self.controller.status_of(name)

    def _on_row_changed(self, row: int) -> None:
        name = self.folder_box.name_at(row)
        if name is not None and name != self.controller.shown_name():
            self.open_image(name)

    def next_to_check(self) -> None:
        """Open the next image not verified yet, in the list's order (wrapping around)."""
        from napari.utils.notifications import show_info

        index = self.controller.next_to_check_index()
        if index is None:
            show_info("nothing left to check" if self.controller.images else
                      "open a folder of images first")
            return
        self.open_image(index)

    def next_image(self) -> None:
        index = self.controller.next_index()
        if index is not None:
            self.open_image(index)

    def previous_image(self) -> None:
        index = self.controller.previous_index()
        if index is not None:
            self.open_image(index)

    def open_image(self, index: int | str | Path) -> None:
        """Show an image of the folder with its saved boxes (restored exactly as left)."""
        from napari.utils.notifications import show_error

        from headless.images import ImageError

        try:
            index = self.controller.index_of(index)
        except ValueError as exc:
            show_error(str(exc))
            return
        from napari_dinoseg._widgets.common.workers import start

        self._opening = getattr(self, "_opening", 0) + 1
        token, controller = self._opening, self.controller
        writes = self._box_writes  # boxes saved by a compute after this read are newer

        def read() -> Any:  # the file is read in a worker, not on the GUI thread
            from headless.progress import Progress

            yield Progress(0, 1, "reading")
            try:
                path, arr, size = controller.read(index)
            except ImageError as exc:
                return exc
            return path, arr, size, controller.load_saved(path.name)

        def shown(result: Any) -> None:
            if token != self._opening:
                return  # a newer image was asked for meanwhile
            if isinstance(result, ImageError):
                show_error(str(result))
                return
            self._show_read(index, *result, writes=writes)

        start(read(), shown, "opening image")

    def _show_read(self, index: int, path: Path, arr: Any, size: Any, saved: Any = None,
                   writes: int | None = None) -> None:
        """Show a read image, then (next turn of the event loop) its boxes: the first image
        adds two layers, and each layer's visuals cost the GUI thread a good part of 0.1 s.

        ``saved`` was read in the worker when :attr:`_box_writes` was ``writes``; a compute
        that saved boxes since (while the file was read, or between the two steps) makes it
        stale, and the boxes are read again."""
        from napari_dinoseg._widgets.common.qt_helpers import in_steps

        if not self.shapes.owns_image():  # a layer of the user's: leave it, and our boxes
            self._remove_own_layers()
        self.controller.last_saved = None
        self.controller.show(index, path, size)
        self.shapes.hold()  # the old boxes over the new image are no edit of it
        self.folder_box.select(path.name)
        self._update_buttons()

        def image() -> None:
            self.shapes.show_image(arr, path.name)
            self.viewer.reset_view()

        def boxes() -> None:
            if self.controller.current_name != path.name:
                return  # another image was shown meanwhile
            fresh = writes is None or writes == self._box_writes
            self._show_saved(saved if fresh else None)
            self._update_buttons()
            self._open_worst_once()

        in_steps(self.viewer, image, boxes)

    def _show_saved(self, saved: Any = None) -> None:
        """(Re)build the Shapes layer of the current image from its saved state (``saved``:
        what :meth:`BoxesController.load_saved` read in a worker; else it is read now)."""
        from napari.utils.notifications import show_error

        boxes, status, error = saved if saved is not None else self.controller.load_saved()
        if error:
            show_error(error)
        self._set_shapes(boxes)
        self._say(f"{self.current_image}: {len(boxes)} box(es), {status}")

    def _remove_own_layers(self) -> None:
        self.shapes.remove()
        self.controller.last_saved = None

    def _set_shapes(self, boxes: list[Any]) -> None:
        cur = self.controller.current
        self.shapes.show(cur["name"], boxes, cur["size"])
        # napari holds vertices as float32: compare later edits with what the layer holds,
        # so that a non-edit (a selection) never saves rounded boxes as 'edited'
        self.controller.last_saved = self.current_boxes()

    # -- the user's edits -------------------------------------------------------------------------
    def save_current(self) -> bool:
        """Save the Shapes layer's boxes as the current image's truth (status edited)."""
        from napari.utils.notifications import show_error, show_warning

        cur = self.controller.current
        if cur is None or self.shapes.layer is None:
            return False
        boxes = self.current_boxes()
        if self.controller.unchanged(boxes):
            return False
        try:
            state = self.controller.save_edit(boxes)
        except (OSError, ValueError) as exc:
            show_error(f"could not save the boxes of {cur['name']}: {exc}; they stay "
                       "in the layer")
            return False
        if state is None:
            show_warning(f"{cur['name']} has no file on disk: its boxes are kept in "
                         "the layer only (export them, or open the image's folder)")
            return False
        self._show_row(state.image)  # noted by the controller: no read needed
        self._say(f"{state.image}: {len(state.boxes)} box(es), edited (saved)")
        return True

    def mark_verified(self) -> None:
        """Record that the current image's boxes were checked (saving them as they are now)."""
        from napari.utils.notifications import show_error

        cur = self.controller.current
        if cur is None:
            show_error("open an image first")
            return
        if self.controller.curation is None:
            show_error(f"{cur['name']} has no file on disk; nothing to verify")
            return
        try:
            state = self.controller.mark_verified(self.current_boxes())
        except (OSError, ValueError) as exc:
            show_error(f"could not save: {exc}")
            return
        self.refresh_list()
        self._say(f"{state.image}: {len(state.boxes)} box(es), verified")

    # -- compute -------------------------------------------------------------------------------
    def _adopt_active_layer(self) -> bool:
        """Without a folder, take the selected (or first) image layer as the current image."""
        from napari.utils.notifications import show_error

        from headless.images import ImageError
        from napari_dinoseg._widgets.common.layers import current_slice

        layer = active_image_layer(self.viewer)
        if layer is None:
            show_error("Open a folder of images (or an image) first.")
            return False
        try:
            self.controller.adopt(layer.name, source_path(layer),
                                  current_slice(layer, self.viewer))
        except ImageError as exc:
            show_error(str(exc))
            return False
        self._remove_own_layers()
        self.shapes.adopt_image(layer)
        self._show_saved()
        return True

    def compute_current(self) -> None:
        """Boxes for the current image, in a worker; they replace its automatic boxes."""
        from napari.utils.notifications import show_warning

        if self._jobs.busy:
            return
        if self.controller.current is None and not self._adopt_active_layer():
            return
        cur = dict(self.controller.current)
        overwrite = self.settings.overwrite
        refusal = self.controller.refusal(cur["name"], overwrite)
        if refusal:
            show_warning(refusal)
            return
        opts, key = self._options(), self.backbone_key()

        def done(run: Any) -> None:
            self._on_single_result(cur, run, overwrite, opts, key)

        self._jobs.start(self.controller.single_job(cur, opts, key), done,
                         f"{opts['method']} boxes of {cur['name']}")

    def _on_single_result(self, cur: dict, run: Any, overwrite: bool, opts: dict,
                          key: tuple) -> None:
        result = self.controller.take_single(cur, run, overwrite, opts, key)
        self._box_writes += 1
        notify_all(result.notices)
        if result.saved:
            self.refresh_list()
        if result.show:
            self._set_shapes(list(result.boxes))
            self._say(result.status)

    def compute_all(self) -> None:
        """Boxes for every image of the folder, in a worker; each saved as soon as computed.

        Images whose boxes were edited or verified keep them unless 'replace' is ticked.
        """
        from napari.utils.notifications import show_error

        if self._jobs.busy:
            return
        if not self.controller.images or self.controller.curation is None:
            show_error("Open a folder of images first.")
            return
        n = len(self.controller.images)
        opts, key = self._options(), self.backbone_key()
        skipped: list[str] = []
        saved: dict[str, Any] = {}
        job = self.controller.folder_job(opts, key, self.settings.overwrite, skipped, saved)

        def done(run: Any) -> None:
            self.controller.note_saved(saved)
            self._on_folder_result(run, skipped, opts)

        self._jobs.start(job, done, f"{opts['method']} boxes of {n} images")

    def _on_folder_result(self, run: Any, skipped: list[str], opts: dict) -> None:
        from napari.utils.notifications import show_info, show_warning

        self._box_writes += 1
        self.refresh_list()
        msg = self.controller.folder_summary(run, skipped, opts)
        show_info(msg)
        if run.failures:
            show_warning("failed: " + "; ".join(f"{k}: {v}" for k, v in
                                                 list(run.failures.items())[:5]))
        self._say(msg)
        if self.controller.shows_new_boxes(run, skipped):
            self._show_saved()

    # -- export --------------------------------------------------------------------------------
    def _export_dialog(self, fmt: str) -> None:
        start = str(self.controller.folder or Path.home())
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

        try:
            boxes = self.current_boxes()
            written, boxset, target = self.controller.export(fmt, path, boxes)
        except NothingToExport as exc:
            show_error(str(exc))
            return []
        except (OSError, ValueError) as exc:
            show_error(f"export failed: {exc}")
            return []
        msg = (f"exported {boxset.n_boxes} box(es) on {len(boxset.images)} image(s) to "
               f"{target}")
        show_info(msg)
        self._say(msg)
        return written
