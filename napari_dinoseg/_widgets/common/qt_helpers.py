"""Small Qt builders shared by the docks."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QDoubleSpinBox, QSpinBox

# plain-Python model caching lives in .models (the controllers need it without Qt)
from napari_dinoseg._widgets.common.models import ModelCache, load_backbone_for_dock

__all__ = ["CHECKPOINT_FILTER", "ModelCache", "browse_checkpoint", "float_spin", "hrow",
           "int_spin", "load_backbone_for_dock"]


def float_spin(lo: float, hi: float, step: float, value: float, decimals: int = 2
               ) -> QDoubleSpinBox:
    """A double spin box with range, step, decimals and a starting value."""
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setDecimals(decimals)
    s.setValue(value)
    return s


def int_spin(lo: int, hi: int, value: int) -> QSpinBox:
    """An integer spin box with range and a starting value."""
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    return s


CHECKPOINT_FILTER = "Checkpoints (*.pth *.pt *.safetensors *.bin)"


def browse_checkpoint(parent: Any, title: str = "Checkpoint") -> str | None:
    """Ask for a local weights file; None when the dialog is cancelled."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getOpenFileName(parent, title, "", CHECKPOINT_FILTER)
    return path or None


def hrow(*items: Any) -> Any:
    """A margin-less row widget of ``items`` (a widget, or ``(widget, stretch)``), for forms."""
    from qtpy.QtWidgets import QHBoxLayout, QWidget

    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    for item in items:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        lay.addWidget(widget, stretch)
    return row
