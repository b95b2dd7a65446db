"""Small Qt builders shared by the docks."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QDoubleSpinBox, QSpinBox

# plain-Python model caching lives in .models (the controllers need it without Qt)
from napari_dinoseg._widgets.common.models import ModelCache, load_backbone_for_dock

__all__ = ["CHECKPOINT_FILTER", "ModelCache", "browse_checkpoint", "float_spin", "hrow",
           "in_steps", "int_spin", "load_backbone_for_dock", "qt_viewer",
           "show_next_turn", "vispy_canvas"]


def float_spin(lo: float, hi: float, step: float, value: float, decimals: int = 2
               ) -> QDoubleSpinBox:
    """A double spin box with range, step, decimals and a starting value."""
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setDecimals(decimals)
    s.setValue(value)
    return s


def int_spin(lo: int, hi: int, value: int) -> QSpinBox:
    """An integer spin box with range and a starting value."""
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    return s


CHECKPOINT_FILTER = "Checkpoints (*.pth *.pt *.safetensors *.bin)"


def browse_checkpoint(parent: Any, title: str = "Checkpoint") -> str | None:
    """Ask for a local weights file; None when the dialog is cancelled."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getOpenFileName(parent, title, "", CHECKPOINT_FILTER)
    return path or None


def hrow(*items: Any) -> Any:
    """A margin-less row widget of ``items`` (a widget, or ``(widget, stretch)``), for forms."""
    from qtpy.QtWidgets import QHBoxLayout, QWidget

    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    for item in items:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        lay.addWidget(widget, stretch)
    return row


def viewer_open(viewer: Any) -> bool:
    """Whether the napari viewer's window is still open (napari drops it on close)."""
    window = getattr(viewer, "window", None)
    return window is None or hasattr(window, "_qt_window")


#: the steps waiting, per viewer (``id``; one chain of timers drains each): steps asked for by
#: different callers join one queue, so two chains never put two steps into one turn
_queues: dict[int, list[Any]] = {}

#: the steps asked for by the step running now, per viewer: they run next (see in_steps)
_nested: dict[int, list[Any]] = {}


def in_steps(viewer: Any, *steps: Any) -> None:
    """Call ``steps`` one per turn of the event loop (inline with ``DINOSEG_SYNC=1``).

    Each step that adds a napari layer costs the GUI thread its visuals and first paint; one
    per turn lets the viewer repaint and answer the mouse in between, where several in one
    callback would add up to one long stall. Steps of every caller go into one queue per
    viewer, in order (two chains of their own fired in the same turn: a layer's first paint
    and the next layer's add made one stall again); steps asked for by a running step come
    next, before the steps already waiting (a layer's own turns, such as its showing, before
    the dock's next step: restoring a scribble layer, its paint mode must follow its showing,
    as napari keeps a hidden layer in pan / zoom). The steps left are dropped once ``viewer``
    has closed; a step must check that what it works on is still there (the user may close a
    layer in between).
    """
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.common.collector import note_activity
    from napari_dinoseg._widgets.common.workers import sync_mode

    if sync_mode():
        for step in steps:
            step()
        return
    key = id(viewer)
    if key in _nested:  # asked for by the running step: they go first once it returns
        _nested[key].extend(steps)
        return
    if key in _queues:  # a chain is draining this viewer's queue: join it
        _queues[key].extend(steps)
        return
    queue = _queues[key] = list(steps)

    # 1 ms, not 0: Qt delivers 0 ms single shots as posted events, all in the same pass of
    # the event loop (no repaint in between); a real timer waits for the next pass
    def next_step() -> None:
        if not queue or not viewer_open(viewer):
            _queues.pop(key, None)
            return
        note_activity()
        _nested[key] = []
        try:
            queue.pop(0)()
        finally:  # (a step that fails is napari's to show; the others still run)
            queue[:0] = _nested.pop(key, [])
            if queue and viewer_open(viewer):
                QTimer.singleShot(1, next_step)
            else:
                _queues.pop(key, None)

    QTimer.singleShot(1, next_step)


def show_next_turn(viewer: Any, layer: Any) -> None:
    """Make ``layer`` (added or refilled hidden) visible on the next turn of the event loop.

    A layer's first paint with new data (its shader programs, text glyphs, meshes) then gets
    a turn of its own instead of adding to the turn that made the layer. Nothing happens if
    the layer was removed in between.
    """
    def show() -> None:
        if layer in viewer.layers:
            layer.visible = True

    in_steps(viewer, show)


def qt_viewer(viewer: Any) -> Any:
    """napari's Qt viewer of ``viewer`` (private: ``window._qt_viewer``), the one place the
    docks reach it; raises AttributeError without one (another napari, a viewer model without
    a window)."""
    return viewer.window._qt_viewer


def vispy_canvas(viewer: Any) -> Any:
    """napari's vispy canvas of ``viewer`` (private: its Qt viewer's ``canvas``)."""
    return qt_viewer(viewer).canvas
