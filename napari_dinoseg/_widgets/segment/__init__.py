"""The scribble dock: paint classes, a probe retrains live, results become layers.
Qt panel over a Qt-free controller and autosave; the engine is :mod:`headless.segment`.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    "SegmentWidget": "panel",
    **dict.fromkeys(("DockOptions", "Notice", "RunResult", "SegmentController"), "controller"),
    **dict.fromkeys(("Autosaver", "SavedWork"), "autosave"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
