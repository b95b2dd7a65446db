"""Compatibility path: the localisation methods now live in :mod:`headless.boxes.localize`.

``headless.localize.localize`` is documented in the README and used by scripts, so it keeps
working; new code imports from ``headless.boxes.localize``.
"""

from __future__ import annotations

from headless.boxes.localize import (
    DEFAULTS,
    METHODS,
    dino_attention_boxes,
    localize,
    lost,
    most,
    tokencut,
)

__all__ = ["DEFAULTS", "METHODS", "dino_attention_boxes", "localize", "lost", "most", "tokencut"]
