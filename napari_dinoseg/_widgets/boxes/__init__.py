"""The boxes dock: compute unsupervised boxes, curate them as a Shapes layer, export.
Qt panel + plain :mod:`.controller` (state); :mod:`.layers` converts boxes <-> napari shapes.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {"BoxesWidget": "panel", "BoxesController": "controller"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
