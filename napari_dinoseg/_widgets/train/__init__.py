"""The Train dock: build a job spec, launch a runner process, follow its log and curves.
Qt panel + plain :mod:`.controller` (form -> spec, the followed run); engine :mod:`headless.jobs`.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {"TrainWidget": "panel", "TrainController": "controller",
            "TrainForm": "controller"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
