"""The Train dock: build a job spec, launch a runner process, follow its log and curves.
Training never runs in napari's process; the engine is :mod:`headless.jobs`.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {"TrainWidget": "panel"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
