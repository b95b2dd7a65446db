"""The boxes dock's "Images" box: the folder's images with their status, and the navigation.

Each row reads ``name   [status]`` in the status's colour (``-`` when nothing is saved).
Refilling or selecting a row from code never fires ``currentRowChanged``: only the user's
choice opens an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

STATUS_COLORS = {"none": "#9a9a9a", "automatic": "#ffb74d", "edited": "#4fc3f7",
                 "verified": "#81c784"}


def item_text(name: str, status: str) -> str:
    return f"{name}   [{status if status != 'none' else '-'}]"


class ImageList(QGroupBox):
    """Open-folder button, folder line, image list and Previous / Next / Mark verified."""

    def __init__(self) -> None:
        super().__init__("Images")
        self.open_folder_btn = QPushButton("Open folder…")
        self.folder_label = QLabel("no folder")
        self.folder_label.setWordWrap(True)
        self.image_list = QListWidget()
        self.image_list.setMinimumHeight(120)
        self.prev_btn = QPushButton("◀ Previous")
        self.next_btn = QPushButton("Next ▶")
        self.verify_btn = QPushButton("Mark verified")
        nav = QHBoxLayout()
        nav.addWidget(self.prev_btn)
        nav.addWidget(self.next_btn)
        nav.addWidget(self.verify_btn)
        fl = QVBoxLayout(self)
        fl.addWidget(self.open_folder_btn)
        fl.addWidget(self.folder_label)
        fl.addWidget(self.image_list)
        fl.addLayout(nav)

    def fill(self, images: Sequence[Path], statuses: dict[str, str], index: int | None) -> None:
        """One row per image with its status; ``index`` is selected (quietly)."""
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for p in images:
            st = statuses.get(p.name, "none")
            item = QListWidgetItem(item_text(p.name, st))
            item.setForeground(QColor(STATUS_COLORS.get(st, "#ffffff")))
            item.setToolTip(f"{p}\nstatus: {st}")
            self.image_list.addItem(item)
        if index is not None:
            self.image_list.setCurrentRow(index)
        self.image_list.blockSignals(False)

    def set_status(self, row: int, name: str, status: str) -> None:
        item = self.image_list.item(row)
        if item is not None:
            item.setText(item_text(name, status))
            item.setForeground(QColor(STATUS_COLORS.get(status, "#ffffff")))

    def select(self, row: int) -> None:
        """Select ``row`` without opening it again."""
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(row)
        self.image_list.blockSignals(False)
