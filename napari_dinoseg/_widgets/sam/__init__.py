"""The SAM dock: automatic and box-prompted masks, one mask per image as pseudo truth.
Qt panel + plain :mod:`.controller` (models, jobs, layer metadata); engine :mod:`headless.sam`.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {"SamWidget": "panel", "SamController": "controller"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
