"""The features dock: attention maps, DINO mask and PCA views of the current image.
Its panel calls :func:`headless.features.views.feature_views` in a worker.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {"FeaturesWidget": "panel"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
