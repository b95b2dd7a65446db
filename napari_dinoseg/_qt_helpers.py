"""Small Qt builders shared by the docks."""

from __future__ import annotations

from qtpy.QtWidgets import QDoubleSpinBox, QSpinBox


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
