"""Small Qt builders shared by the docks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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


CHECKPOINT_FILTER = "Checkpoints (*.pth *.pt *.safetensors *.bin)"


def browse_checkpoint(parent: Any, title: str = "Checkpoint") -> str | None:
    """Ask for a local weights file; None when the dialog is cancelled."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getOpenFileName(parent, title, "", CHECKPOINT_FILTER)
    return path or None


class ModelCache:
    """Models a dock has loaded, once per ``(name, weights, device)``; safe to use from workers.

    ``loader(name, weights, device)`` builds a model (e.g. ``load_backbone``, ``load_sam``).
    """

    def __init__(self, loader: Callable[[str, str, str], Any]) -> None:
        self._loader = loader
        self._items: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            if key not in self._items:
                self._items[key] = self._loader(*key)
            return self._items[key]


def load_backbone_for_dock(name: str, weights: str, device: str) -> Any:
    from headless.features.backbones import load_backbone

    return load_backbone(name, weights, device=device)
