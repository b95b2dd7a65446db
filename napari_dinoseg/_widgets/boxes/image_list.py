"""The boxes dock's "Images" box: the folder's images as a QC queue, and the navigation.

Each row reads ``0.82  name  automatic``: the uncertainty of the automatic boxes (``  - `` when
there is none), the name and the status, in the status's colour (``-`` when nothing is saved).
Above the list: the order ("worst first" / "name"), the status filter and "Next to check"
(Ctrl+Shift+N). Refilling or selecting a row from code never fires ``currentRowChanged``: only
the user's choice opens an image. Rows are found by image name: with a sort or a filter the
row is not the folder index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtGui import QColor, QKeySequence
from qtpy.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from napari_dinoseg._widgets.boxes.qc_queue import FILTERS, SORTS

STATUS_COLORS = {"none": "#9a9a9a", "automatic": "#ffb74d", "edited": "#4fc3f7",
                 "verified": "#81c784"}
NEXT_TO_CHECK_KEY = "Ctrl+Shift+N"


def item_text(name: str, status: str, uncertainty: float | None = None) -> str:
    u = "  - " if uncertainty is None else f"{uncertainty:.2f}"
    return f"{u}  {name}  {status if status != 'none' else '-'}"


def item_tip(row: Any) -> str:
    u = "no QC record" if row.uncertainty is None else f"uncertainty {row.uncertainty:.2f}"
    lines = [row.image, f"status: {row.status}, {u}", *row.reasons]
    return "\n".join(lines)


class ImageList(QGroupBox):
    """Open-folder button, folder line, queue controls, image list, Previous / Next / verify."""

    def __init__(self) -> None:
        super().__init__("Images")
        self.open_folder_btn = QPushButton("Open folder…")
        self.folder_label = QLabel("no folder")
        self.folder_label.setWordWrap(True)
        self.sort_combo = QComboBox()
        self.sort_combo.addItems(list(SORTS))
        self.sort_combo.setToolTip("worst first: the images whose automatic boxes most need a "
                                   "human (no box, methods disagree, little attention) on top")
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(FILTERS))
        self.filter_combo.setToolTip("show only images with this status; 'to check' = all but "
                                     "verified")
        self.next_check_btn = QPushButton("Next to check")
        self.next_check_btn.setShortcut(QKeySequence(NEXT_TO_CHECK_KEY))
        self.next_check_btn.setToolTip("the next image not verified yet, in the list's order "
                                       f"({NEXT_TO_CHECK_KEY})")
        self.queue_label = QLabel("")
        queue_row = QHBoxLayout()
        queue_row.addWidget(QLabel("Sort"))
        queue_row.addWidget(self.sort_combo)
        queue_row.addWidget(QLabel("Show"))
        queue_row.addWidget(self.filter_combo)
        queue_row.addWidget(self.next_check_btn)
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
        fl.addLayout(queue_row)
        fl.addWidget(self.queue_label)
        fl.addWidget(self.image_list)
        fl.addLayout(nav)
        self.names: list[str] = []  # the image of each row

    def fill(self, rows: Sequence[Any], current: str | None) -> None:
        """One row per QC row (image, uncertainty, status); ``current`` is selected (quietly)."""
        self.image_list.blockSignals(True)
        self.image_list.clear()
        self.names = [r.image for r in rows]
        for r in rows:
            item = QListWidgetItem(item_text(r.image, r.status, r.uncertainty))
            item.setForeground(QColor(STATUS_COLORS.get(r.status, "#ffffff")))
            item.setToolTip(item_tip(r))
            self.image_list.addItem(item)
        self.image_list.blockSignals(False)
        self.select(current)

    def update_row(self, row: Any, still_shown: bool) -> bool:
        """Redraw the row of ``row.image`` in place; False if it must be refilled instead."""
        if not still_shown or row.image not in self.names:
            return False
        item = self.image_list.item(self.names.index(row.image))
        item.setText(item_text(row.image, row.status, row.uncertainty))
        item.setForeground(QColor(STATUS_COLORS.get(row.status, "#ffffff")))
        item.setToolTip(item_tip(row))
        return True

    def name_at(self, row: int) -> str | None:
        return self.names[row] if 0 <= row < len(self.names) else None

    def select(self, name: str | None) -> None:
        """Select the row of image ``name`` (none if it is not shown) without opening it."""
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(self.names.index(name) if name in self.names else -1)
        self.image_list.blockSignals(False)
