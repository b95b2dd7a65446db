"""Notices a dock's plain-Python part words and its Qt part shows as napari notifications.

Controllers never import napari; they return ``(level, text)`` pairs ('error', 'warning' or
'info') and the panel passes each to :func:`notify`.
"""

from __future__ import annotations

from collections.abc import Iterable

Notice = tuple[str, str]


def notify(level: str, text: str) -> None:
    """Show ``text`` as a napari notification of ``level`` ('error', 'warning', 'info')."""
    from napari.utils import notifications

    show = {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        level, notifications.show_info)
    show(text)


def notify_all(notices: Iterable[Notice]) -> None:
    for level, text in notices:
        notify(level, text)
