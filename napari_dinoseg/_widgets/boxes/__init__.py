"""The boxes dock: compute unsupervised boxes, curate them as a Shapes layer, export.
:mod:`.layers` converts boxes <-> napari shapes; the engine is :mod:`headless.boxes`.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {"BoxesWidget": "panel"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
