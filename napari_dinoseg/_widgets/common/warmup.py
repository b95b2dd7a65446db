"""Warm up, off the GUI thread, what napari and the docks load on their first use.

The first Labels layer of a session imports pandas (its features table) and scikit-image's
colour module (its colormap, which pulls in scipy.linalg), and vispy's first line visual makes
its dash patterns; the first Shapes layer compiles napari's numba triangulation. On the GUI
thread that froze the viewer for 0.5-1 s on the first "New", the first SAM masks and the first
boxes image. The scribble dock's first training imports scikit-learn in its worker, and C
extensions hold the GIL while they load: the first stroke froze the viewer in chunks.

A dock calls :func:`warm_up_later` when it is made: once the dock is built and painted (a
thread started inside ``__init__`` held import locks the dock itself was waiting for), one
daemon thread per kind and session does those imports while the user looks at the dock.
Imports in a thread are safe (Python's per-module import locks); a failure only means no
warm-up. Nothing is warmed up with ``DINOSEG_SYNC=1`` (tests).

:func:`warm_up_glyphs_later` makes the glyphs of the usual captions in napari's canvas font, a
few per turn of the event loop (Qt draws them: GUI thread), before a dock's first Shapes or
Points layer needs them.

The imports make a few hundred thousand objects that all stay alive (modules, functions,
classes), yet they counted towards Python's full garbage collection, which ran once or twice
during a warm-up: 100-300 ms each with napari and torch loaded, holding the GIL, so the viewer
froze just after the dock opened: the warm-up runs in
:func:`~.collector.long_lived_allocations`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import partial
from importlib import import_module
from typing import Any

from napari_dinoseg._widgets.common.collector import long_lived_allocations
from napari_dinoseg._widgets.common.qt_helpers import vispy_canvas

#: what the first Labels layer imports: pandas (napari's features table) and scikit-image's
#: colour conversions (the label colormap; ``skimage.color`` alone is a lazy stub)
LABELS_MODULES = ("pandas", "skimage.color.colorconv")

#: what the scribble dock's first training imports in its worker (about 800 modules:
#: scikit-learn's forest and linear models, scipy.optimize / stats / sparse; C extensions
#: hold the GIL while they load, so the first stroke's run froze the viewer in chunks), and
#: the segmentation workflow, which the dock's settings and restore use on the GUI thread
SEGMENT_MODULES = ("sklearn.ensemble", "sklearn.linear_model", "headless.segment.workflow",
                   "headless.segment.probe", "headless.features.classical_tiled",
                   "headless.features.highres.memory")

_lock = threading.Lock()
_threads: dict[str, threading.Thread] = {}
_pending: set[str] = set()


def _threads_running() -> bool:
    """Whether a warm-up thread is still importing (it holds the GIL in C-extension loads)."""
    return any(t.is_alive() for t in list(_threads.values()))


def _run(job: Callable[[], None]) -> None:
    with long_lived_allocations():
        job()


def _labels() -> None:
    for name in LABELS_MODULES:
        try:
            import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up only: napari imports it again if needed
            pass
    try:  # the dash patterns of vispy's first line visual (the labels' overlays): cached numpy
        from vispy.visuals.line.dash_atlas import DashAtlas

        DashAtlas()
    except Exception:  # noqa: BLE001 - napari makes them on its first Labels layer instead
        pass


def _shapes() -> None:
    _labels()  # shapes tables are pandas too
    try:
        from napari.layers.shapes._accelerated_triangulate_dispatch import warmup_numba_cache

        warmup_numba_cache()
        # napari warms its triangulation up for float32 vertices; the boxes' rectangles are
        # float64, another compiled version to load (40 ms on the first computed boxes)
        import numpy as np
        from napari.layers.shapes._shapes_models import Rectangle

        Rectangle(np.array([[0.0, 0.0], [8.0, 8.0]]))
    except Exception:  # noqa: BLE001 - napari compiles on the first Shapes layer instead
        pass


def _segment() -> None:
    _labels()
    for name in SEGMENT_MODULES:
        try:
            import_module(name)
        except Exception:  # noqa: BLE001 - the training run imports it instead
            pass


_JOBS = {"labels": _labels, "shapes": _shapes, "segment": _segment}


def warm_up(kind: str = "labels") -> threading.Thread:
    """Start (once per session and kind) the warm-up for ``kind``: 'labels', 'shapes' (the
    boxes dock) or 'segment' (the scribble dock: labels and the first training's imports)."""
    with _lock:
        _pending.discard(kind)
        thread = _threads.get(kind)
        if thread is None:
            thread = threading.Thread(target=_run, args=(_JOBS[kind],),
                                      name=f"dinoseg-warmup-{kind}", daemon=True)
            _threads[kind] = thread
            thread.start()
        return thread


#: how long after a dock is made its warm-up starts: started on the next turn of the event loop,
#: its C-extension loads (which hold the GIL) fell into the dock's first layout and paint, and
#: opening the scribble dock stalled 130-180 ms; 300 ms later, 63-68 ms (and the boxes dock
#: 108-111 -> 88-92 ms). A user does not click in the dock sooner; if one does, the import
#: just happens where it is first needed.
WARMUP_DELAY_MS = 300


def warm_up_later(kind: str = "labels") -> None:
    """:func:`warm_up` ``WARMUP_DELAY_MS`` after the dock is built (not at all in sync mode)."""
    from napari_dinoseg._widgets.common.workers import sync_mode

    if sync_mode():
        return
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.common import session

    session.prepare()
    with _lock:
        if kind in _threads:
            return
        _pending.add(kind)
    QTimer.singleShot(WARMUP_DELAY_MS, lambda: warm_up(kind))


def warmed_up() -> bool:
    """Whether every warm-up asked for so far has finished (benchmarks wait for it)."""
    with _lock:
        return not _pending and not _threads_running()


#: the glyphs a first caption draws: vispy measures every text with "ÅÉÑŐjgpqy" (even an empty
#: one: a Points layer's), then the caption's own characters. Each new glyph is drawn by Qt and
#: turned into a distance field on the CPU, ~5 ms: a first Shapes / Points layer spent 70 ms
#: of its first paint on them.
GLYPHS = ("ÅÉÑŐjgpqy0123456789.:-_()%/ abcdefghijklmnopqrstuvwxyz"
          "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
GLYPHS_PER_TURN = 2
STEPS_WAIT_MS = 200  # while a dock's job or a warm-up thread runs (GIL), GUI steps wait


def warm_up_glyphs_later(viewer: Any) -> None:
    """Make the glyphs of :data:`GLYPHS` in the viewer's canvas font, a few per turn of the
    event loop (GUI thread: Qt draws them), from ``WARMUP_DELAY_MS`` after the dock is built,
    pausing while a dock's job or a warm-up thread runs: both compete for the GIL, and a glyph
    then took 50-160 ms instead of 5 (again later: only the glyphs not made yet).

    Not in sync mode (tests); nothing when napari's canvas has no font of its own (older or
    newer napari: its private ``font_info``).
    """
    def steps() -> list[tuple[int, Callable[[], None]]]:
        font = _canvas_font(viewer)
        known = getattr(font, "_glyphs", {})
        todo = [c for c in dict.fromkeys(GLYPHS) if c not in known] if font is not None else []
        return [(1, partial(_make_glyphs, font, todo[i:i + GLYPHS_PER_TURN]))
                for i in range(0, len(todo), GLYPHS_PER_TURN)]

    _gui_steps_later(viewer, "glyphs", steps)


def _canvas_font(viewer: Any) -> Any:
    """The font napari's text visuals draw with (its canvas's shared font manager), or None."""
    try:
        info = vispy_canvas(viewer).font_info
        info = info() if callable(info) else info
        return info.font_manager.get_font(info.face, False, False)
    except Exception:  # noqa: BLE001 - another napari: no warm-up, napari draws them later
        return None


def _make_glyphs(font: Any, chars: list[str]) -> None:
    for char in chars:
        font[char]


#: how long the brush circle stays shown (transparent) while warming up: one paint of the canvas
BRUSH_PAINT_MS = 150


def warm_up_brush_later(viewer: Any) -> None:
    """Make napari's brush circle (the paint cursor) and draw it once, transparent, before the
    first paint mode: napari makes its two ellipse visuals (~35 ms) as paint mode first shows
    it, and the canvas compiles their shader programs on that paint (~45 ms), one 110-130 ms
    stall of the first "New". Here in turns of their own (made, not drawn; drawn; hidden), once
    per viewer, when no job or warm-up thread runs. Not in sync mode; nothing on a napari
    without the private ``canvas.overlays['_brush_circle']`` and its canvas's visual map."""
    try:
        overlay = viewer.canvas.overlays["_brush_circle"]
        visuals = vispy_canvas(viewer)._viewer_overlay_to_visual
    except Exception:  # noqa: BLE001 - another napari: the first paint mode makes it
        return
    before: dict[str, Any] = {}

    def nodes() -> list[Any]:
        return [v.node for v in visuals.get(overlay, ())]

    def make() -> None:  # napari makes the visuals as the overlay is shown: kept undrawn
        if overlay.visible:  # paint mode already: made and drawn
            return
        before["opacity"] = overlay.opacity
        overlay.opacity = 0.0
        overlay.visible = True
        for node in nodes():
            node.visible = False

    def draw() -> None:  # the next paint compiles their programs
        if "opacity" in before and overlay.visible:
            for node in nodes():
                node.visible = True

    def hide() -> None:
        if "opacity" not in before:
            return
        if not str(getattr(viewer.cursor, "style", "")).startswith("circle"):
            overlay.visible = False  # (paint mode chosen meanwhile: napari's to show)
        overlay.opacity = before["opacity"]

    _gui_steps_later(viewer, "brush",
                     lambda: [(1, make), (BRUSH_PAINT_MS, draw), (BRUSH_PAINT_MS, hide)],
                     once_per_viewer=True)


#: the warm-ups done once per viewer, by viewer: a second dock does not warm up again
_done: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _gui_steps_later(viewer: Any, kind: str,
                     make_steps: Callable[[], list[tuple[int, Callable[[], None]]]],
                     once_per_viewer: bool = False) -> None:
    """Run GUI-thread warm-up steps ``(delay_ms, step)`` (made by ``make_steps`` when they
    start), one per turn, from ``WARMUP_DELAY_MS`` on; while a dock's job or a warm-up thread
    runs (they compete for the GIL: a step then took several times as long) they wait. Tracked
    in ``_pending`` as ``kind`` until done; not in sync mode; a failing step ends its warm-up
    (napari does the work when it is needed)."""
    from napari_dinoseg._widgets.common.workers import sync_mode

    if sync_mode():
        return
    from qtpy.QtCore import QTimer

    with _lock:
        if kind in _pending or kind in _done.get(viewer, ()):
            return
        _pending.add(kind)
        if once_per_viewer:
            _done.setdefault(viewer, set()).add(kind)
    QTimer.singleShot(WARMUP_DELAY_MS, lambda: _steps(viewer, kind, make_steps()))


def _steps(viewer: Any, kind: str, todo: list[tuple[int, Callable[[], None]]]) -> None:
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.common.collector import jobs_running
    from napari_dinoseg._widgets.common.qt_helpers import viewer_open

    def step() -> None:
        if not todo or not viewer_open(viewer):
            with _lock:
                _pending.discard(kind)
            return
        if jobs_running() or _threads_running():
            QTimer.singleShot(STEPS_WAIT_MS, step)  # a thread competes for the GIL: later
            return
        try:
            todo.pop(0)[1]()
        except Exception:  # noqa: BLE001 - a warm-up only: napari does it when needed
            todo.clear()
        QTimer.singleShot(todo[0][0] if todo else 1, step)

    QTimer.singleShot(todo[0][0] if todo else 1, step)
