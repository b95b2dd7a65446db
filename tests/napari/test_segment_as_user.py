"""The scribble dock as a user lives in it: paint, see a result, keep painting (Xvfb)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from headless.images import read_image, read_labels

pytestmark = pytest.mark.gui


@pytest.fixture
def small(shared_data, monkeypatch):
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    d = shared_data / "scribbles"
    return read_image(d / "3.tif"), read_labels(d / "3_labels.tif"), d


def _paint_classes(layer, scribbles):
    for v in [int(v) for v in np.unique(scribbles) if v]:
        rows, cols = np.nonzero(scribbles == v)
        layer.data_setitem((rows, cols), v)


def _drag(viewer, frac0, frac1):
    """A left-button drag across the canvas, as the mouse sends it (fractions of its size)."""
    sc = viewer.window._qt_viewer.canvas._scene_canvas
    w, h = sc.size
    p0 = (int(frac0[0] * w), int(frac0[1] * h))
    p1 = (int(frac1[0] * w), int(frac1[1] * h))
    sc.events.mouse_press(pos=p0, modifiers=(), button=1)
    for t in np.linspace(0, 1, 10):
        p = (int(p0[0] + t * (p1[0] - p0[0])), int(p0[1] + t * (p1[1] - p0[1])))
        sc.events.mouse_move(pos=p, modifiers=(), button=1, press_event=None)
    sc.events.mouse_release(pos=p1, modifiers=(), button=1)


def _count_results(w):
    shown = []
    original = w.show_segmentations

    def counting(*args, **kwargs):
        shown.append(args[0])
        return original(*args, **kwargs)

    w.show_segmentations = counting
    return shown


def test_result_layers_leave_the_brush_in_hand(make_napari_viewer, qtbot, small):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, scribbles, _ = small
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    layer = w.new_scribble_layer()
    assert viewer.layers.selection.active is layer and layer.mode == "paint"
    shown = _count_results(w)
    w.show_probs_check.setChecked(True)  # the (hidden) probability layers are added too
    _paint_classes(layer, scribbles)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    assert "img p(class 255)" in viewer.layers
    # the new result layers did not take the selection or the mode
    assert viewer.layers.selection.active is layer and layer.mode == "paint"
    before = np.array(layer.data)
    layer.selected_label = 255
    _drag(viewer, (0.3, 0.5), (0.7, 0.5))  # pans if another layer were selected
    assert (layer.data != before).sum() > 0 and np.all(layer.data[layer.data != before] == 255)
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=20000)  # and it retrained


def test_crf_tick_refreshes_the_live_result(make_napari_viewer, qtbot, small):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, scribbles, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    layer = w.new_scribble_layer()
    shown = _count_results(w)
    _paint_classes(layer, scribbles)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    assert w.crf_params() is None
    w.crf_group.setChecked(True)
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=20000)
    assert w.crf_params() is not None and "CRF" in w.status.text().upper()
    w.crf_group.iterations.setValue(3)
    qtbot.waitUntil(lambda: len(shown) >= 3, timeout=20000)
    w.live_check.setChecked(False)  # without live mode the button is the way
    w.crf_group.iterations.setValue(4)
    qtbot.wait(600)
    assert len(shown) == 3


def test_class_table_swatches_match_the_label_colours(make_napari_viewer, qtbot, small):
    from qtpy.QtCore import Qt

    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, _, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.set_class_names({1: "background", 2: "cell"})
    layer = w.new_scribble_layer()
    for r, value in enumerate((1, 2)):
        swatch = w.class_table.item(r, 0).data(Qt.ItemDataRole.DecorationRole)
        got = swatch.toImage().pixelColor(5, 5)
        want = np.round(np.asarray(layer.get_color(value))[:3] * 255)
        assert np.abs(np.array([got.red(), got.green(), got.blue()]) - want).max() <= 8  # depth


def test_reopened_image_is_ready_to_paint(make_napari_viewer, qtbot, small, tmp_path):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    _, scribbles, d = small
    path = tmp_path / "three.tif"
    shutil.copy(d / "3.tif", path)
    viewer = make_napari_viewer()
    viewer.open(str(path))
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    shown = _count_results(w)
    _paint_classes(w.new_scribble_layer(), scribbles)
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    w.flush_saves()
    viewer.close()

    again = make_napari_viewer(show=True)
    again.open(str(path))
    w2 = SegmentWidget(again)
    qtbot.addWidget(w2)
    layer = again.layers["three scribbles"]
    assert "three segmentation" in again.layers  # restored after it, yet:
    assert again.layers.selection.active is layer and layer.mode == "paint"
    assert layer.brush_size >= 1 and layer.selected_label in (127, 255)
    shown2 = _count_results(w2)
    before = np.array(layer.data)
    _drag(again, (0.3, 0.5), (0.7, 0.5))
    assert (layer.data != before).sum() > 0
    qtbot.waitUntil(lambda: len(shown2) >= 1, timeout=20000)
