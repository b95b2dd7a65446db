"""Keeping the user's tool in hand while docks add result layers.

napari selects every layer it adds, so a result layer written after a stroke took the selection
(and the paint mode) away from the scribble layer: the next drag panned the canvas. Docks add
their outputs inside :func:`keep_selection`; a new or restored layer the user is meant to paint
is handed over with :func:`select_for_painting`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

BRUSH_SIZE = 5


@contextmanager
def keep_selection(viewer: Any) -> Iterator[None]:
    """Restore the selected layers, the active layer and its mode after the block."""
    selection = viewer.layers.selection
    active = selection.active
    chosen = list(selection)
    mode = getattr(active, "mode", None)
    try:
        yield
    finally:
        unchanged = (selection.active is active and set(selection) == set(chosen)
                     and getattr(active, "mode", None) == mode)
        alive = [ly for ly in chosen if ly in viewer.layers]
        if not unchanged and (alive or active is not None):  # (each change costs napari events)
            selection.clear()
            selection.update(alive)
            if active is not None and active in viewer.layers:
                selection.active = active
                if mode is not None and getattr(active, "mode", mode) != mode:
                    active.mode = mode


def select_for_painting(viewer: Any, layer: Any, label: int | None = None) -> None:
    """Make ``layer`` the only selected layer, in paint mode with the brush ready."""
    viewer.layers.selection.active = layer
    if getattr(layer, "brush_size", BRUSH_SIZE) <= 1:
        layer.brush_size = BRUSH_SIZE
    layer.mode = "paint"
    if label is not None:
        layer.selected_label = label
