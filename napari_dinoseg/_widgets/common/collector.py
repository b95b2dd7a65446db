"""Objects made to live for the session (imports, a loaded model) kept out of full collections.

Importing scikit-learn or building a ViT makes a few hundred thousand objects that all stay
alive, yet they count towards CPython's full garbage collection (3.11: it runs once the objects
that survived into the oldest generation reach a quarter of those there). A warm-up triggered
one or two, a first model load another: each scanned ~500 000 objects with napari and torch
loaded, 100-370 ms holding the GIL, so the viewer froze although the work ran in a thread.

:func:`long_lived_allocations` keeps the collector off during such a block (plain Python, any
thread), then moves what was made into the oldest generation without counting it there
(``gc.freeze`` then ``gc.unfreeze`` at once: nothing stays frozen, and later full collections
still scan, and free, everything). Garbage cycles made inside the block wait for the next
full collection. Cost: none measurable (both calls relink lists).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
# the collector is process-wide, so is this: blocks running now, and whether they turned it off
_state = {"blocks": 0, "paused": False}


@contextmanager
def long_lived_allocations() -> Iterator[None]:
    """The garbage collector off for the block (nested or concurrent blocks: the first turns
    it off, the last back on); what was made is then filed with the old objects.

    Left alone when the collector is off already, or the host application froze objects of
    its own (``gc.unfreeze`` would release those too).
    """
    with _lock:
        _state["blocks"] += 1
        if _state["blocks"] == 1:
            _state["paused"] = gc.isenabled() and gc.get_freeze_count() == 0
            if _state["paused"]:
                gc.disable()
    try:
        yield
    finally:
        with _lock:
            _state["blocks"] -= 1
            if _state["blocks"] == 0 and _state["paused"]:
                _state["paused"] = False
                gc.freeze()  # every tracked object to the permanent generation, at once ...
                gc.unfreeze()  # ... and back into the oldest one, without being counted there
                gc.enable()


# -- full collections when the user pauses ---------------------------------------------------------

#: CPython's full collections, left to its counters, ran in the middle of a stroke or a result:
#: with napari, torch and scikit-learn loaded ~1 000 000 tracked objects, 260-470 ms holding
#: the GIL (the viewer frozen whichever thread collected). :class:`IdleCollections` keeps the
#: young generations as they are and runs the full one when the user pauses.
CHECK_MS = 500  # how often the GUI thread looks
IDLE_S = 2.0  # no pointer motion, mouse button, typing or dock activity for this long
MIN_GAP_S = 30.0  # at most one full collection per 30 s while idle
MAX_GAP_S = 300.0  # and one at the latest after 5 min of use without a pause
OPT_OUT = "DINOSEG_GC"  # =python: leave CPython's collector as it is


class IdleCollections:
    """Full garbage collections moved to pauses of the user (on the GUI thread).

    Installing raises CPython's third threshold so it never starts a full collection itself
    (generations 0 and 1 stay automatic: a few ms each). A Qt timer then runs one when a full
    collection is due (at least CPython's own count of young collections since the last) and
    the user has paused for ``IDLE_S`` (the pointer still, no button down, no typing in the
    focused field, no dock job or layer step: :func:`note_activity`), at most every
    ``MIN_GAP_S``; after ``MAX_GAP_S``
    without a pause it runs anyway, so garbage cycles never pile up. Not installed when the
    collector is off or its thresholds are not CPython's own (the host tuned them).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 pointer: Callable[[], Any] | None = None) -> None:
        self._clock = clock
        self._pointer = pointer or _pointer_state
        self._thresholds: tuple[int, int, int] | None = None
        self._timer: Any = None
        self._last_full = clock()
        self._last_input = clock()
        self._seen: Any = None
        self.collections = 0  # full collections run (tests, benchmarks)

    def install(self) -> bool:
        """Take over full collections; whether it did (see the class docstring)."""
        if self._thresholds is not None:
            return True
        thresholds = gc.get_threshold()
        if not gc.isenabled() or thresholds[2] > 1000:
            return False
        self._thresholds = thresholds
        gc.set_threshold(thresholds[0], thresholds[1], 2**30)
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        self._timer = QTimer(QApplication.instance())  # Qt's to delete, with the application
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()
        return True

    def uninstall(self) -> None:
        """Give full collections back to CPython (its own thresholds)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def due(self) -> bool:
        """Whether CPython would be counting towards a full collection by now."""
        return self._thresholds is not None and gc.get_count()[2] >= self._thresholds[2]

    def check(self) -> bool:
        """One look (the timer's): run a full collection if due and the user paused."""
        now = self._clock()
        seen = self._pointer()
        if seen != self._seen or (seen is not None and seen[1]):  # moved, typed, button down
            self._seen, self._last_input = seen, now
        if not self.due() or not gc.isenabled():  # (a long-lived block turned it off)
            return False
        quiet = min(now - self._last_input, now - _activity["last"])
        idle = not jobs_running() and quiet >= IDLE_S
        since = now - self._last_full
        if (idle and since >= MIN_GAP_S) or since >= MAX_GAP_S:
            gc.collect()
            self._last_full = self._clock()
            self.collections += 1
            return True
        return False


def _pointer_state() -> Any:
    """What the user's hands changed, application-wide: the pointer's position, whether a
    mouse button is down, and the focused text field with its text (typing moves no pointer)."""
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QCursor
    from qtpy.QtWidgets import QApplication

    pos = QCursor.pos()
    down = QApplication.mouseButtons() != Qt.MouseButton.NoButton
    return (pos.x(), pos.y()), down, _typed(QApplication.focusWidget())


def _typed(widget: Any) -> Any:
    """The focused widget and where its text stands (a line edit's text, a text document's
    revision: cheap), or None."""
    if widget is None:
        return None
    if hasattr(widget, "document") and callable(widget.document):  # QTextEdit and kin
        try:
            return id(widget), widget.document().revision()
        except (AttributeError, RuntimeError):
            return id(widget), None
    text = getattr(widget, "text", None)
    try:
        return id(widget), text() if callable(text) else None
    except RuntimeError:  # deleted meanwhile
        return None


# what the docks are doing: jobs running, and when they last started / ended one or a layer step
_activity = {"running": 0, "last": 0.0}
_installed: list[IdleCollections] = []


def note_activity(running: int = 0) -> None:
    """A dock did something now (``running`` +1 as a job starts, -1 as it ends)."""
    with _lock:
        _activity["running"] = max(0, _activity["running"] + running)
        _activity["last"] = time.monotonic()


def jobs_running() -> bool:
    """Whether a dock's job is running now (its worker competes for the GIL)."""
    return _activity["running"] > 0


def install_idle_collections() -> IdleCollections | None:
    """Once per session (GUI thread): :class:`IdleCollections`, unless ``DINOSEG_GC=python``,
    sync mode (tests) or the host's own collector settings; the one installed, or None."""
    import os

    from napari_dinoseg._widgets.common.sync import sync_mode

    with _lock:
        if _installed:
            return _installed[0]
        if os.environ.get(OPT_OUT, "") == "python" or sync_mode():
            return None
        collections = IdleCollections()
        if not collections.install():
            return None
        _installed.append(collections)
        return collections
