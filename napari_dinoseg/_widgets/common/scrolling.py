"""Docks that fit any screen: content in a scroll area, groups that fold away.

A dock's minimum height used to be all of its fields, so the Train dock alone made the window
1607 px tall and hid its progress bar and curves below the screen. :func:`scroll_layout` puts
the content in a ``QScrollArea`` (the dock shrinks to what the window leaves and scrolls), and
:func:`collapsible` wraps a ``QGroupBox`` in a foldable section with the group's title.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QGroupBox, QScrollArea, QVBoxLayout, QWidget

#: the dock's preferred height; it shrinks below this and scrolls (1280 x 800 screens)
PREFERRED_HEIGHT = 560


#: room for the close / hide / float buttons left of a dock's title
TITLE_BUTTONS_PX = 90

#: the least height a dock keeps (a few rows), whatever its content
MIN_HEIGHT = 160


class _Area(QScrollArea):
    """Scrolls vertically only: as wide as the content needs (nothing cut off at the right),
    as short as the window leaves (the rest scrolls)."""

    _fit_pending = False  # a fit_width is waiting for the next turn
    _shown = False  # shown once (the image was fitted again then)
    #: whether the viewer's whole scene was in view as the dock was made (before napari added
    #: it and the canvas narrowed; by its first show the canvas has narrowed already)
    scene_was_in_view: bool | None = None

    def minimumSizeHint(self) -> Any:  # noqa: N802 - Qt's name
        hint = super().minimumSizeHint()
        inner = self.widget()
        if inner is not None:
            hint.setWidth(self.needed_width())
            hint.setHeight(min(MIN_HEIGHT, inner.minimumSizeHint().height()))
        return hint

    def needed_width(self) -> int:
        """The content's minimum width plus the scroll bar, and room for the dock's title and
        its three buttons (once in a dock)."""
        inner = self.widget()
        if inner is None:
            return 0
        bar = self.verticalScrollBar().sizeHint().width()
        width = inner.minimumSizeHint().width() + bar + 2
        dock = self._dock()
        if dock is not None:
            width = max(width, self.fontMetrics().horizontalAdvance(dock.windowTitle())
                        + TITLE_BUTTONS_PX)
        return width

    def fit_width(self) -> None:
        """Keep the area (hence the dock) as wide as :meth:`needed_width`."""
        if self.widget() is not None:
            self.setMinimumWidth(self.needed_width())

    def _dock(self) -> Any:
        from qtpy.QtWidgets import QDockWidget

        w = self.parentWidget()
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        return w

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        from qtpy.QtCore import QEvent

        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.fit_width_later()
        return super().eventFilter(obj, event)

    def fit_width_later(self) -> None:
        """:meth:`fit_width` on the next turn of the event loop (once for many requests): a
        new width re-lays out the window and repaints napari's canvas (30-40 ms here), which
        then gets a turn of its own instead of adding to the dock's first layout."""
        if self._fit_pending:
            return
        self._fit_pending = True
        from qtpy.QtCore import QTimer

        def fit() -> None:
            try:
                self._fit_pending = False
                self.fit_width()
            except RuntimeError:  # the dock was closed (and deleted) in between
                pass

        QTimer.singleShot(1, fit)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.fit_width_later()
        super().showEvent(event)
        viewer = getattr(self.parentWidget(), "viewer", None)
        if not self._shown and viewer is not None:
            self._shown = True
            # the new dock narrows the canvas: fit the scene again once the layout settled
            # (else an image opened before the dock, e.g. a sample, shows cropped); a turn
            # after the width is fitted (its own repaint). Only a scene that was all in view
            # (as napari opened it) and no longer is: a view the user zoomed into stays theirs
            from qtpy.QtCore import QTimer

            whole = self.scene_was_in_view
            QTimer.singleShot(20, lambda: _refit_view(viewer, whole))

    def sizeHint(self) -> Any:  # noqa: N802 - Qt's name
        # as wide as fit_width will make it (the title's room too): napari docks the area at
        # this width (once styled, the content may still ask for a little more: fit_width)
        hint = super().sizeHint()
        inner = self.widget().sizeHint() if self.widget() is not None else hint
        bar = self.verticalScrollBar().sizeHint().width()
        hint.setWidth(max(hint.width(), inner.width() + bar, self.needed_width()))
        hint.setHeight(min(inner.height() + 4, PREFERRED_HEIGHT))
        return hint


def scene_in_view(viewer: Any) -> bool | None:
    """Whether every layer of ``viewer`` lies inside its canvas now (2D view, within a pixel);
    None where that cannot be told (3D, no layer, another napari)."""
    import numpy as np

    try:
        if viewer.dims.ndisplay != 2 or not len(viewer.layers):
            return None
        extent = viewer.layers.extent
        shown = list(viewer.dims.displayed)
        low = np.asarray(extent.world[0], float)[shown]
        high = np.asarray(extent.world[1], float)[shown]
        step = np.asarray(extent.step, float)[shown]
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
        height, width = viewer.canvas.size
        half = np.array([height, width], float) / float(camera.zoom) / 2
        centre = np.asarray(camera.center, float)[-2:]
    except Exception:  # noqa: BLE001 - another napari: unknown, napari's reset as before
        return None
    return bool(np.all(low + step >= centre - half) and np.all(high - step <= centre + half))


def _refit_view(viewer: Any, whole_before: bool | None) -> None:
    """Fit the scene to the canvas (napari's reset) if it was all in view before the dock
    narrowed the canvas and is not now (unknown: reset, as napari would)."""
    try:
        if len(viewer.layers) and whole_before is not False \
                and scene_in_view(viewer) is not True:
            viewer.reset_view()
    except RuntimeError:  # the viewer closed meanwhile
        pass


def scroll_layout(panel: QWidget) -> QVBoxLayout:
    """Give ``panel`` a scroll area and return the layout of the scrolled content."""
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _Area()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    inner = QWidget()
    inner.setObjectName("dinoseg_scrolled")
    area.setWidget(inner)
    inner.installEventFilter(area)
    outer.addWidget(area)
    panel.scroll_area = area
    viewer = getattr(panel, "viewer", None)
    if viewer is not None:
        area.scene_was_in_view = scene_in_view(viewer)
    return QVBoxLayout(inner)


def collapsible(group: QGroupBox, expanded: bool = True) -> QWidget:
    """``group`` inside a foldable section titled like it (click the title to fold)."""
    from superqt import QCollapsible

    section = QCollapsible(group.title())
    group.setTitle("")
    section.setContentsMargins(0, 0, 0, 0)
    section.addWidget(group)
    if expanded:
        section.expand(animate=False)
    else:
        section.collapse(animate=False)
    return section


def fill_in_turns(layout: QVBoxLayout, widgets: list[QWidget], viewer: Any) -> None:
    """Put ``widgets`` into ``layout``: the first now, the others one per turn of the event loop
    (inline with ``DINOSEG_SYNC=1``), then a stretch.

    Qt polishes and lays out every widget of a dock as napari adds it: the Train dock's ~150
    widgets froze the viewer 40 ms in ``addDockWidget`` alone (14 ms with its first section),
    and its first layout and paint after. Each later section gets a turn of its own; the
    widgets all exist from the start (only their place in the dock waits).
    """
    from napari_dinoseg._widgets.common.qt_helpers import in_steps

    def put(widget: QWidget) -> Any:
        def step() -> None:
            try:
                layout.insertWidget(layout.count() - 1, widget)
            except RuntimeError:  # the dock was closed (and deleted) in between
                pass
        return step

    first, rest = widgets[0], widgets[1:]
    layout.addWidget(first)
    layout.addStretch(1)
    in_steps(viewer, *(put(w) for w in rest))
