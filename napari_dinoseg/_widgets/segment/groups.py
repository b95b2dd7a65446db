"""Field groups of the scribble dock: the class table with its buttons, and the CRF settings.

The class table only shows names; the :class:`.controller.SegmentController` owns them, and
refilling the table blocks its signals, so filling it never reads back as a rename by the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import float_spin, int_spin


def row(*widgets: QWidget, stretch_first: bool = False) -> QHBoxLayout:
    """Widgets side by side; ``stretch_first`` lets the first take the spare width."""
    layout = QHBoxLayout()
    for i, w in enumerate(widgets):
        layout.addWidget(w, 1 if stretch_first and i == 0 else 0)
    return layout


def button(text: str, slot: Callable[[], Any], tip: str = "") -> QPushButton:
    """A push button calling ``slot()`` (without the ``checked`` argument Qt passes)."""
    b = QPushButton(text)
    if tip:
        b.setToolTip(tip)
    b.clicked.connect(lambda: slot())
    return b


def _pair(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box


class ClassTable:
    """A two-column table ("value", "class name") and its Add / Remove buttons.

    Selecting a row picks the value to paint; ``add`` and ``remove`` are called by the buttons.
    """

    def __init__(self, add: Callable[[], Any], remove: Callable[[], Any]) -> None:
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["value", "class name"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setMaximumHeight(130)
        self.buttons = row(
            button("Add class", add),
            button("Remove class", remove,
                   "forget the name of the selected class (its scribbles stay)"))

    def add_to(self, layout: QVBoxLayout) -> None:
        layout.addWidget(QLabel("classes (select one to paint it)"))
        layout.addWidget(self.table)
        layout.addLayout(self.buttons)

    def fill(self, names: dict[int, str], select: int | None = None,
             colors: dict[int, tuple[float, ...]] | None = None) -> None:
        """Show ``names`` sorted by value; make the row of ``select`` current.

        ``colors`` (RGBA 0..1 per value, from the scribble layer) become the value cells'
        swatches, so the table reads like the canvas.
        """
        from qtpy.QtGui import QColor, QPixmap
        t = self.table
        t.blockSignals(True)
        t.setRowCount(0)
        for value in sorted(names):
            r = t.rowCount()
            t.insertRow(r)
            v = QTableWidgetItem(str(value))
            v.setFlags(v.flags() & ~Qt.ItemFlag.ItemIsEditable)
            rgba = (colors or {}).get(value)
            if rgba is not None:
                swatch = QPixmap(12, 12)
                swatch.fill(QColor.fromRgbF(*[min(max(c, 0.0), 1.0) for c in rgba[:3]]))
                v.setData(Qt.ItemDataRole.DecorationRole, swatch)
            t.setItem(r, 0, v)
            t.setItem(r, 1, QTableWidgetItem(names[value]))
            if value == select:
                t.setCurrentCell(r, 1)
        t.blockSignals(False)

    def value_at(self, r: int) -> int | None:
        """The class value of row ``r``, or None when there is no such row."""
        item = self.table.item(r, 0) if r >= 0 else None
        return None if item is None else int(item.text())

    def selected_value(self) -> int | None:
        return self.value_at(self.table.currentRow())


class CRFGroup(QGroupBox):
    """The dense CRF settings; checking the group turns the CRF on."""

    def __init__(self) -> None:
        from headless.segment.crf import CRFParams

        super().__init__("dense CRF refinement")
        c = CRFParams()
        self.setCheckable(True)
        self.setChecked(False)
        self.fields = QWidget()
        form = QFormLayout(self.fields)
        form.setContentsMargins(0, 0, 0, 0)
        QVBoxLayout(self).addWidget(self.fields)
        self.fields.setVisible(False)  # folded while the CRF is off
        self.toggled.connect(self.fields.setVisible)
        self.gsxy = float_spin(0.1, 50, 0.5, c.gaussian_sxy, decimals=1)
        self.gcompat = float_spin(0, 50, 0.5, c.gaussian_compat, decimals=1)
        self.bsxy = float_spin(0.1, 200, 1, c.bilateral_sxy, decimals=1)
        self.bsrgb = float_spin(0.1, 255, 1, c.bilateral_srgb, decimals=1)
        self.bcompat = float_spin(0, 50, 0.5, c.bilateral_compat, decimals=1)
        self.iterations = int_spin(1, 50, c.iterations)
        form.addRow("gaussian px / weight", _pair(self.gsxy, self.gcompat))
        form.addRow("bilateral px / grey / weight", _pair(self.bsxy, self.bsrgb, self.bcompat))
        form.addRow("iterations", self.iterations)

    def on_change(self, slot: Callable[..., Any]) -> None:
        """Call ``slot`` when the CRF is switched or a parameter is edited."""
        self.toggled.connect(slot)
        for spin in (self.gsxy, self.gcompat, self.bsxy, self.bsrgb, self.bcompat,
                     self.iterations):
            spin.valueChanged.connect(slot)  # debounced by the dock

    def values(self) -> dict[str, float] | None:
        """``CRFParams`` fields as plain values, or None when the CRF is off."""
        if not self.isChecked():
            return None
        return dict(gaussian_sxy=self.gsxy.value(), gaussian_compat=self.gcompat.value(),
                    bilateral_sxy=self.bsxy.value(), bilateral_srgb=self.bsrgb.value(),
                    bilateral_compat=self.bcompat.value(), iterations=self.iterations.value())
