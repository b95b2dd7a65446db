"""Every dock fits a 1280 x 800 window: it scrolls inside itself, nothing is cut off (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

DOCKS = ("Scribble segmentation", "Object boxes", "SAM masks", "Train")


@pytest.mark.parametrize("names", [("Train",), ("Object boxes", "SAM masks"),
                                   ("Scribble segmentation",)])
def test_docks_scroll_and_keep_their_width(make_napari_viewer, qtbot, names):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((512, 512, 3), np.uint8), rgb=True, name="photo")
    win = viewer.window._qt_window
    win.resize(1280, 800)
    panels = [viewer.window.add_plugin_dock_widget("napari-dinoseg", n)[1] for n in names]
    for _ in range(20):
        QApplication.processEvents()
    qtbot.wait(50)
    assert win.height() <= 800 and win.width() <= 1280  # the docks did not grow the window
    for panel in panels:
        area = panel.scroll_area
        inner = area.widget()
        # nothing cut off at the right: the content fits the visible width
        assert inner.width() <= area.viewport().width() + 1
        assert inner.minimumSizeHint().width() <= area.viewport().width() + 1
        # the size hint napari docks the area at already holds the width it is then fitted
        # to (content, scroll bar, the dock's title and buttons)
        assert area.sizeHint().width() >= area.minimumWidth() == area.needed_width()
    if names == ("Train",):  # taller than the window: it scrolls, and the curves are there
        area = panels[0].scroll_area
        assert area.widget().height() > area.viewport().height()
        assert area.verticalScrollBar().maximum() > 0
        area.ensureWidgetVisible(panels[0].confusion)
        QApplication.processEvents()
        assert area.verticalScrollBar().value() > 0


def test_groups_fold(make_napari_viewer, qtbot):
    from superqt import QCollapsible

    from napari_dinoseg._widgets.train.panel import TrainWidget

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    # the sections take their places one per turn of the event loop (a dock added in pieces)
    qtbot.waitUntil(lambda: len(w.findChildren(QCollapsible)) == 4, timeout=5000)
    sections = w.findChildren(QCollapsible)
    assert [s.text() for s in sections] == ["Data", "Job", "Optimisation", "Run"]
    w.show()
    qtbot.wait(50)
    before = sections[2].height()
    sections[2].collapse(animate=False)
    qtbot.wait(100)
    assert not sections[2].isExpanded()
    assert sections[2].height() < before - 100  # the Optimisation fields folded away


def test_opening_a_dock_refits_a_whole_scene_but_keeps_a_zoomed_view(make_napari_viewer,
                                                                     qtbot):
    """A dock narrows the canvas: an image opened before it (as napari fitted it) showed
    cropped, so the scene is fitted again; a view the user zoomed into is left as it was."""
    from qtpy.QtWidgets import QApplication

    from napari_dinoseg._widgets.common.scrolling import scene_in_view

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.add_image(np.zeros((512, 700), np.uint8), name="wide")
    for _ in range(10):
        QApplication.processEvents()
    viewer.reset_view()
    camera = viewer.scene.camera
    wide_zoom = camera.zoom
    assert scene_in_view(viewer) is True

    def settle() -> None:
        for _ in range(20):
            QApplication.processEvents()
        qtbot.wait(300)

    viewer.window.add_plugin_dock_widget("napari-dinoseg", "Object boxes")
    settle()
    assert camera.zoom < wide_zoom and scene_in_view(viewer) is True  # fitted again
    zoomed = camera.zoom * 3
    camera.zoom = zoomed  # the user zooms into a detail
    assert scene_in_view(viewer) is False
    viewer.window.add_plugin_dock_widget("napari-dinoseg", "SAM masks")
    settle()
    assert camera.zoom == pytest.approx(zoomed)  # the user's view stays
