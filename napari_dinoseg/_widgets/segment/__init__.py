"""The scribble dock: paint classes, a probe retrains live, results become layers.
The panel wires Qt; the engine is :mod:`headless.segment`.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {"SegmentWidget": "panel"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
