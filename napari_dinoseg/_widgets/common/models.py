"""Models a dock loads, kept once per ``(name, weights, device)``: plain Python, no Qt.

The docks' controllers hold these caches, so that they (and their tests) need neither Qt nor
napari; :mod:`.qt_helpers` re-exports both names for code that imported them from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


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
