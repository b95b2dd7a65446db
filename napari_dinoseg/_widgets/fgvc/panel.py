"""The votes dock (Qt): pick a trained fgvc run and an image, see its top-5 classes and a
layer stack of the per-layer vote maps over the image (the slider steps through the blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from napari_dinoseg._widgets.common.layer_picking import ImageLayerPicker
from napari_dinoseg._widgets.common.layers import add_image
from napari_dinoseg._widgets.common.workers import WorkerSlot
from napari_dinoseg._widgets.fgvc.controller import (
    VotesController,
    image_plane,
    top_text,
    vote_layer,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari


class FgvcVotesWidget(QWidget):
    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = VotesController()
        form = QFormLayout(self)
        self.run_edit = QLineEdit("last")
        self.run_edit.setToolTip("run folder, its name, a unique prefix, or 'last'")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.run_edit)
        row.addWidget(browse)
        form.addRow("Run", row)
        self.images = ImageLayerPicker(napari_viewer)
        form.addRow("Image", self.images.combo)
        self.show_button = QPushButton("Classify and show votes")
        self.show_button.clicked.connect(self.show_votes)
        form.addRow(self.show_button)
        self.top_label = QLabel("")
        form.addRow("Top 5", self.top_label)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self.slot = WorkerSlot(on_busy=lambda b: self.show_button.setEnabled(not b),
                               on_status=self.status.setText)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a run folder")
        if folder:
            self.run_edit.setText(folder)

    def show_votes(self) -> None:
        try:
            layer = self.images.layer()
            run_dir = self.controller.resolve(self.run_edit.text())
            image = image_plane(layer.data, bool(layer.rgb))
        except ValueError as exc:
            self.status.setText(f"error: {exc}")
            return
        name = layer.name

        def done(view) -> None:
            data, kwargs = vote_layer(view, name, run_dir)
            add_image(self.viewer, data, **kwargs)
            self.top_label.setText(top_text(view))
            self.status.setText(f"{run_dir.name}: {data.shape[0]} layers of votes")

        self.status.setText("working…")
        self.slot.start(self.controller.explain(run_dir, image), done, "fgvc votes")
