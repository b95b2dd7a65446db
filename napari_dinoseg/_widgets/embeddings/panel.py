"""The embedding explorer dock (Qt): a map of a folder's features as a Points layer, coloured
by class or by an outlier / mislabel score; the selected point's image opens beside the map, and
a ranked list steps through the most unusual images.

Compute, image reading and the CSV export run in workers (:mod:`..common.workers`); the GUI
thread only builds layers. The plain-Python parts are :mod:`.controller` (the map, scores and
ranking) and :mod:`.layers` (colours, layer arguments, where the image sits).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QWidget,
)

from napari_dinoseg._widgets.common.fields import ModelFields
from napari_dinoseg._widgets.common.layers import add_image, add_in_turns
from napari_dinoseg._widgets.common.notices import notify
from napari_dinoseg._widgets.common.qt_helpers import hrow, int_spin
from napari_dinoseg._widgets.common.scrolling import scroll_layout
from napari_dinoseg._widgets.common.warmup import warm_up_glyphs_later, warm_up_later
from napari_dinoseg._widgets.common.workers import WorkerSlot, start
from napari_dinoseg._widgets.embeddings import layers as L
from napari_dinoseg._widgets.embeddings.controller import (
    SCORES,
    EmbeddingController,
    EmbeddingResult,
    compute,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: how many of the most unusual images the list shows
LIST_LENGTH = 200

WEIGHTS_TIP = ("'official' (cache / download), 'random' (untrained), a checkpoint file, or a "
               "finished dino run folder (its teacher; backbone 'auto' takes the run's)")


def _progress_text(item: Any) -> str:
    total = getattr(item, "total", 0)
    if not total:
        return ""
    return f"{getattr(item, 'message', '') or 'working'}: {item.done} / {total}"


class EmbeddingsWidget(QWidget):
    """Embedding explorer: map, colours, the ranked list and the image of the chosen point."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from headless.features.backbones import list_backbones

        self.viewer = napari_viewer
        warm_up_later("labels")  # the map's Points layer imports pandas: off the GUI thread
        warm_up_glyphs_later(self.viewer)  # its captions' glyphs, a few per turn
        self.controller = EmbeddingController()
        self.folder: Path | None = None  # the folder of the map on screen
        self.layer: Any = None  # the map's Points layer
        self.image_layer: Any = None  # the opened image
        self._request = 0  # the latest image read (older ones arriving late are dropped)
        self._rows: list[int] = []  # point index of each list row
        self._by = "class"

        layout = scroll_layout(self)
        form = QFormLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("an ImageFolder (a sub-folder per class) or images")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.setToolTip("choose the folder of images")
        browse.clicked.connect(self._browse_folder)
        form.addRow("folder", hrow((self.folder_edit, 1), browse))
        self.model_fields = ModelFields(
            self, ["auto", *list_backbones()], "dinov2_vits14", weights_tip=WEIGHTS_TIP,
            name_tip="the backbone whose CLS features are mapped ('auto': a dino run's own)")
        self.backbone_combo = self.model_fields.name_combo
        self.weights_combo = self.model_fields.weights
        run_button = QPushButton("run…")
        run_button.setToolTip("use a finished dino run folder (its teacher) as the weights")
        run_button.clicked.connect(self._browse_run)
        self.model_fields.weights_row.addWidget(run_button)
        self.model_fields.add_rows(form)
        self.size_spin = int_spin(16, 1024, 224)
        self.size_spin.setSingleStep(14)
        self.size_spin.setToolTip("input size: images are resized and centre-cropped to this")
        self.k_spin = int_spin(1, 200, 10)
        self.k_spin.setToolTip("neighbours for the outlier and mislabel scores")
        self.projection_combo = QComboBox()
        self.projection_combo.addItems(["auto", "umap", "pca"])
        self.projection_combo.setToolTip("auto: UMAP when umap-learn is installed, else PCA")
        form.addRow("input size", self.size_spin)
        form.addRow("k", self.k_spin)
        form.addRow("projection", self.projection_combo)
        layout.addLayout(form)
        self.compute_button = QPushButton("Compute map")
        self.compute_button.clicked.connect(self.compute_map)
        layout.addWidget(self.compute_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        self.explore_box = QGroupBox("Explore")
        ex = QFormLayout(self.explore_box)
        self.colour_combo = QComboBox()
        for key, text in L.COLOUR_CHOICES.items():
            self.colour_combo.addItem(text, key)
        self.colour_combo.currentIndexChanged.connect(
            lambda _i: self.set_colour_by(self.colour_combo.currentData()))
        ex.addRow("colour by", self.colour_combo)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        ex.addRow(self.legend)
        self.rank_combo = QComboBox()
        for key in SCORES:
            self.rank_combo.addItem(L.COLOUR_CHOICES[key], key)
        self.rank_combo.currentIndexChanged.connect(
            lambda _i: self.set_rank_by(self.rank_combo.currentData()))
        ex.addRow("most unusual by", self.rank_combo)
        self.ranked_list = QListWidget()
        self.ranked_list.setMinimumHeight(150)
        self.ranked_list.currentRowChanged.connect(self._row_chosen)
        ex.addRow(self.ranked_list)
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        ex.addRow(hrow((self.prev_button, 1), (self.next_button, 1)))
        self.detail = QLabel("select a point or a list row")
        self.detail.setWordWrap(True)
        ex.addRow(self.detail)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("the same CSV as `dinoseg embed` (most unusual first)")
        self.export_button.clicked.connect(lambda: self.export_csv())
        ex.addRow(self.export_button)
        layout.addWidget(self.explore_box)
        layout.addStretch(1)
        self.explore_box.setEnabled(False)

        self.slot = WorkerSlot(on_busy=lambda b: self.compute_button.setEnabled(not b),
                               on_status=self.status.setText)
        self.slot.weights_fields = [self.model_fields]
        self.export_slot = WorkerSlot(on_busy=lambda b: self.export_button.setEnabled(not b),
                                      on_status=self.status.setText)

    # -- the map ------------------------------------------------------------------------------
    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.folder_edit.setText(folder)

    def _browse_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A finished dino run folder")
        if folder:
            self.model_fields.set(name="auto", weights=folder)

    def compute_map(self) -> None:
        """Features, map and scores of the folder, in a worker; the layer when it is done."""
        text = self.folder_edit.text().strip()
        if not text:
            self.status.setText("error: choose a folder of images")
            notify("error", "Embeddings: choose a folder of images")
            return
        folder = Path(text).expanduser()
        name, weights, device = self.model_fields.key()
        gen = compute(folder, name, weights, device, self.size_spin.value(), self.k_spin.value(),
                      self.projection_combo.currentText())
        self.status.setText(f"computing the map of {folder.name or folder}…")
        self._computing = True
        self.slot.start(gen, lambda r: self.show_result(r, folder), "embedding map",
                        on_yield=lambda item: self._progress(item))

    def _progress(self, item: Any) -> None:
        text = _progress_text(item)
        # a progress signal queued behind the result must not overwrite the result's line
        if text and getattr(self, "_computing", False):
            self.status.setText(text)

    def show_result(self, result: EmbeddingResult, folder: Path) -> None:
        self._computing = False
        ctl = self.controller
        ctl.set_result(result)
        self.folder = folder
        labelled = result.labels is not None
        for combo in (self.colour_combo, self.rank_combo):  # mislabel needs classes
            item = combo.model().item(combo.findData("mislabel"))
            item.setEnabled(labelled)
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        # added hidden and shown a turn later: napari's first paint of a Points layer (its
        # shaders and text visual) then gets a turn of its own (one 144-226 ms stall before)
        from napari.layers import Points

        self.layer = add_in_turns(self.viewer, Points(L.world_points(ctl),
                                                      **L.points_kwargs(ctl, folder, "class")),
                                  mode="select")  # a click selects a point (opens its image)
        self.layer.selected_data.events.items_changed.connect(self._selection_changed)
        self.viewer.reset_view()
        self.explore_box.setEnabled(True)
        self._by = ""
        self._select_combo(self.colour_combo, "class" if labelled else "knn_distance")
        self.set_colour_by(self.colour_combo.currentData())
        self._select_combo(self.rank_combo, ctl.score)
        self.set_rank_by(ctl.score)
        self.status.setText(f"{len(result.paths)} images, {result.embedding.projection} map of "
                            f"{result.model_label}" + (f"; classes {', '.join(result.classes)}"
                                                       if labelled else ""))

    @staticmethod
    def _select_combo(combo: QComboBox, key: str) -> None:
        combo.blockSignals(True)
        combo.setCurrentIndex(combo.findData(key))
        combo.blockSignals(False)

    def _alive(self) -> bool:
        return self.controller.result is not None and self.layer is not None \
            and self.layer in self.viewer.layers

    def set_colour_by(self, key: str) -> None:
        """Colour the map by class or by a score (choosing a score also ranks the list by it)."""
        if key == self._by or not self._alive():
            return
        if key == "mislabel" and self.controller.result.labels is None:
            self._select_combo(self.colour_combo, self._by)
            self.status.setText("mislabel scores need an ImageFolder (one sub-folder per class)")
            return
        self._by = key
        self._select_combo(self.colour_combo, key)
        self.layer.face_color = L.colours(self.controller, key)
        self.legend.setText(L.legend_html(self.controller, key))
        if key != "class" and key != self.controller.score:
            self._select_combo(self.rank_combo, key)
            self.set_rank_by(key)

    # -- the ranked list ----------------------------------------------------------------------
    def set_rank_by(self, key: str) -> None:
        ctl = self.controller
        if ctl.result is None:
            return
        try:
            ctl.set_score(key)
        except ValueError as exc:
            self._select_combo(self.rank_combo, ctl.score)
            self.status.setText(str(exc))
            return
        names = L.relative_names(self.folder, ctl.result.paths)
        ranked = ctl.ranked(LIST_LENGTH)
        self._rows = [i for i, _, _ in ranked]
        self.ranked_list.blockSignals(True)
        self.ranked_list.clear()
        for n, (i, _name, value) in enumerate(ranked, 1):
            self.ranked_list.addItem(f"{n}. {names[i]}   {value:.3f}")
        self.ranked_list.setCurrentRow(-1)
        self.ranked_list.blockSignals(False)

    def step(self, delta: int) -> None:
        """Previous / next unusual image: selects its list row, its point, opens the image."""
        if not self._rows:
            return
        self.controller.step(delta)
        row = min(self.controller.position, len(self._rows) - 1)
        if row == self.ranked_list.currentRow():
            self._row_chosen(row)
        else:
            self.ranked_list.setCurrentRow(row)

    def _row_chosen(self, row: int) -> None:
        if row < 0 or row >= len(self._rows) or not self._alive():
            return
        self.controller.position = row
        self.select_point(self._rows[row])

    def select_point(self, index: int) -> None:
        """Select point ``index`` in the map (which opens its image)."""
        if not self._alive():
            return
        if set(self.layer.selected_data) == {index}:
            self.open_point(index)  # already selected: no selection event
        else:
            self.layer.selected_data = {index}

    def _selection_changed(self, _event: Any = None) -> None:
        if not self._alive():
            return
        chosen = list(self.layer.selected_data)
        if len(chosen) == 1:
            self.open_point(int(chosen[0]))

    # -- the image beside the map -------------------------------------------------------------
    def open_point(self, index: int) -> None:
        """Describe point ``index``, align the list with it, read its image in a worker."""
        ctl = self.controller
        if index in self._rows and self.ranked_list.currentRow() != self._rows.index(index):
            row = self._rows.index(index)
            ctl.position = row
            self.ranked_list.blockSignals(True)
            self.ranked_list.setCurrentRow(row)
            self.ranked_list.blockSignals(False)
        self.detail.setText(ctl.describe(index))
        path = ctl.image_path(index)
        self._request += 1
        token = self._request

        def read() -> Any:
            from headless.images import read_image
            from headless.progress import Progress

            yield Progress(0, 1, path.name)
            return L.plane(read_image(path))

        def shown(image: Any) -> None:
            if token == self._request:  # a later choice supersedes this one
                self._place_image(path, image)

        start(read(), shown, "embedding image")

    def _place_image(self, path: Path, image: Any) -> None:
        from headless.images import is_rgb

        if not self._alive():
            return
        scale, translate = L.beside(L.world_points(self.controller), image)
        rgb = is_rgb(image)
        name = L.IMAGE_PREFIX + path.name
        old = self.image_layer
        if old is not None and old in self.viewer.layers and bool(old.rgb) == rgb \
                and old.data.ndim == image.ndim:
            old.data = image
            old.scale, old.translate, old.name = scale, translate, name
            if not rgb:
                old.reset_contrast_limits()
            return
        first = old is None or old not in self.viewer.layers
        if not first:
            self.viewer.layers.remove(old)
        # the points keep the selection: clicks go on choosing points
        self.image_layer = add_image(self.viewer, image, select=False, name=name, rgb=rgb,
                                     scale=scale, translate=translate)
        if first:
            self.viewer.reset_view()

    # -- export -------------------------------------------------------------------------------
    def export_csv(self, path: str | Path | None = None) -> None:
        """Write the scores CSV and the map's PNG beside it (same stem), as ``dinoseg embed``
        writes them (in a worker)."""
        res = self.controller.result
        if res is None:
            self.status.setText("compute a map first")
            return
        if path is None:
            start_at = str(self.folder.parent / f"{self.folder.name}_embedding.csv")
            path, _ = QFileDialog.getSaveFileName(self, "Save the embedding CSV", start_at,
                                                  "CSV (*.csv)")
            if not path:
                return

        def write() -> Any:
            import numpy as np

            from headless.progress import Progress
            from headless.train.ssl.explore import write_csv
            from headless.train.ssl.plot import scatter_plot

            yield Progress(0, 2, "CSV")
            csv = write_csv(path, res.paths, res.embedding, res.labels,
                            res.classes if res.labels is not None else None)
            yield Progress(1, 2, "PNG of the map")
            labelled = res.labels is not None
            png = Path(path).with_suffix(".png")
            groups = res.labels if labelled else np.zeros(len(res.paths), int)
            scatter_plot(png, res.embedding.xy, groups, res.classes if labelled else ["images"],
                         f"{res.embedding.projection} of {res.model_label}")
            return csv, png

        self.export_slot.start(
            write(), lambda out: self.status.setText(f"wrote {out[0]} and {Path(out[1]).name}"),
            "embedding CSV")
