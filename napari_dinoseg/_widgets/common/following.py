"""Keeping a job's follower thread no longer than its dock: the run goes on, the following stops.

A dock closed by napari's close button is reparented to nothing (an orphan, hidden), the viewer's
window closes, or the widget is deleted: :func:`in_window` tells the first two apart from a
folded section, :func:`stopper` sets the followers' stop events on deletion and at quit, and
:func:`unless_deleted` makes a worker's callback harmless once the widgets are gone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


def unless_deleted(method: Callable[..., None]) -> Callable[..., None]:
    """A worker's callback that does nothing (and stops following) once the group is gone."""

    @functools.wraps(method)
    def call(self: Any, *args: Any) -> None:
        try:
            method(self, *args)
        except RuntimeError as exc:  # "wrapped C/C++ object ... has been deleted": closed
            if "deleted" not in str(exc):
                raise
            for stop in getattr(self, "_stops", ()):
                stop.set()

    return call


def in_window(widget: Any) -> bool:
    """Whether ``widget`` sits in a shown window (a dock closed by napari is an orphan)."""
    try:
        return widget.window() is not widget and widget.window().isVisible()
    except RuntimeError:  # deleted
        return False


def stopper(stops: list[threading.Event]) -> Callable[..., None]:
    """A slot that stops every follower of a group (the group may be gone by then)."""
    from qtpy.QtWidgets import QApplication

    def stop(*_: Any) -> None:
        for event in stops:
            event.set()

    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(stop)
    return stop
