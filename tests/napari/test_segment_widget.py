"""The scribble segmentation dock in a real napari viewer (run under xvfb-run)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from headless.images import read_image, read_labels

pytestmark = pytest.mark.gui


@pytest.fixture
def sync(monkeypatch):
    monkeypatch.setenv("DINOSEG_SYNC", "1")


@pytest.fixture
def small(shared_data):
    """scribbles/3: a real 75 x 75 image with scribbles of two classes (127 / 255)."""
    d = shared_data / "scribbles"
    return read_image(d / "3.tif"), read_labels(d / "3_labels.tif"), d


def paint(layer, scribbles, values=None):
    """Paint like a user: one stroke (paint event) per class."""
    for v in values or [int(v) for v in np.unique(scribbles) if v]:
        rows, cols = np.nonzero(scribbles == v)
        layer.data_setitem((rows, cols), v)


def wait_for_layer(qtbot, viewer, name, timeout=20000):
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=timeout)
    return viewer.layers[name]


def test_live_training_after_strokes(make_napari_viewer, qtbot, sync, small):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, scribbles, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    layer = w.new_scribble_layer()
    assert layer.name == "img scribbles" and layer.data.shape == image.shape
    paint(layer, scribbles)
    seg = wait_for_layer(qtbot, viewer, "img segmentation")
    assert set(np.unique(seg.data)) == {127, 255}  # the scribble values, not 1..K
    m = scribbles > 0
    assert (seg.data[m] == scribbles[m]).mean() > 0.95
    assert "img p(class 127)" not in viewer.layers and viewer.dims.ndim == 2  # no stray slider
    w.show_probs_check.setChecked(True)  # live mode: the result is refreshed with them
    probs = [wait_for_layer(qtbot, viewer, f"img p(class {v})") for v in (127, 255)]
    assert all(p.data.shape == image.shape for p in probs) and viewer.dims.ndim == 2
    np.testing.assert_allclose(probs[0].data + probs[1].data, 1, atol=1e-4)
    assert w.probe.kind == "rf" and w.probe.meta.class_values == [127, 255]
    assert "class 127" in w.status.text()
    assert np.array_equal(layer.data[m], scribbles[m])  # the dock never edits scribbles


def test_one_class_is_a_status_message_not_a_crash(make_napari_viewer, qtbot, sync, small):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, scribbles, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    layer = w.new_scribble_layer()
    paint(layer, scribbles, values=[127])
    qtbot.waitUntil(lambda: "only one class" in w.status.text(), timeout=10000)
    assert "img segmentation" not in viewer.layers
    paint(layer, scribbles, values=[255])  # the second class arrives: it trains
    wait_for_layer(qtbot, viewer, "img segmentation")


def test_wrong_shape_scribbles_are_explained(make_napari_viewer, qtbot, sync, small):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, _, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    other = viewer.add_labels(np.zeros((20, 30), np.uint8), name="other")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.scribble_combo.setCurrentText("other")
    other.data_setitem((np.array([1, 2]), np.array([1, 2])), 1)
    qtbot.waitUntil(lambda: "shape (20, 30)" in w.status.text(), timeout=10000)
    assert "img segmentation" not in viewer.layers


def test_autosave_and_reopen_restore(make_napari_viewer, qtbot, sync, small, tmp_path):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    _, scribbles, d = small
    path = tmp_path / "three.tif"
    shutil.copy(d / "3.tif", path)
    viewer = make_napari_viewer()
    viewer.open(str(path))
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.set_class_names({127: "fibre", 255: "matrix"})
    layer = w.new_scribble_layer()
    paint(layer, scribbles)
    wait_for_layer(qtbot, viewer, "three segmentation")
    w.flush_saves()
    saved = tmp_path / ".dinoseg" / "images" / "three.tif"
    assert {p.name for p in saved.iterdir()} >= {"scribbles.tif", "segmentation.tif",
                                                  "classes.json", "probe.npz"}
    assert not list(saved.glob("*.tmp"))  # temporary files were renamed
    viewer.close()

    again = make_napari_viewer()
    again.open(str(path))
    w2 = SegmentWidget(again)
    qtbot.addWidget(w2)
    assert "three scribbles" in again.layers
    np.testing.assert_array_equal(again.layers["three scribbles"].data, scribbles)
    assert "three segmentation" in again.layers
    assert w2.probe is not None and w2.probe.meta.class_names == ["fibre", "matrix"]
    assert w2.class_names() [127] == "fibre"
    assert "restored" in w2.status.text()


def test_stack_apply_and_folder_apply(make_napari_viewer, qtbot, sync, shared_data, tmp_path):
    import tifffile

    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    d = shared_data / "em_cells"
    stack = read_image(d / "train_stack_small.tif")[:3, 150:280, 150:280]
    scr = read_labels(d / "wss_train_labels.tiff")[:3, 150:280, 150:280]
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.classifier_combo.setCurrentIndex(w.classifier_combo.findData("linear"))
    w.live_check.setChecked(False)
    layer = w.new_scribble_layer()
    assert layer.data.shape == stack.shape
    rows, cols = np.nonzero(scr[0])
    layer.data_setitem((np.zeros_like(rows), rows, cols), scr[0][rows, cols])  # slice 0 only
    w.train_now()
    seg = wait_for_layer(qtbot, viewer, "cells segmentation")
    assert seg.data.shape == stack.shape
    w.apply_to_stack()
    qtbot.waitUntil(lambda: all(seg.data[i].any() for i in range(3)), timeout=20000)
    assert set(np.unique(seg.data)) <= {85, 170, 255}
    assert viewer.dims.ndim == 3  # the stack's own axis only
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        tifffile.imwrite(folder / f"s{i}.tif", stack[i])
    w.probs_check.setChecked(True)
    w.apply_to_folder(folder, tmp_path / "out")
    qtbot.waitUntil(lambda: (tmp_path / "out" / "s1_labels.tif").exists(), timeout=20000)
    out = tifffile.imread(tmp_path / "out" / "s0_labels.tif")
    np.testing.assert_array_equal(out, seg.data[0])
    assert (tmp_path / "out" / "s0_proba.tif").exists()


def test_probe_save_load_switches_features(make_napari_viewer, qtbot, sync, small, tmp_path):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, scribbles, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    paint(w.new_scribble_layer(), scribbles)
    wait_for_layer(qtbot, viewer, "img segmentation")
    path = w.save_probe(tmp_path / "p.npz")
    assert path.exists()
    w.set_features("bilinear", "test_dino_tiny16", "random")
    assert w.classifier_combo.currentData() == "linear"
    w.probe = None
    probe = w.load_probe(path)
    assert probe is not None and w.probe is probe
    assert w.features_combo.currentData() == "classical"  # switched to match the probe
    assert w.classifier_combo.currentData() == "rf"
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    assert w.load_probe(bad) is None
    assert "not a probe file" in w.status.text()
    assert w.probe is probe  # a failed load keeps the working probe


def test_vit_features_in_the_dock(make_napari_viewer, qtbot, sync, small):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    image, scribbles, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.set_features("hr", "test_dinov2_tiny14_reg", "random")
    assert w.classifier_combo.currentData() == "linear"
    paint(w.new_scribble_layer(), scribbles)
    seg = wait_for_layer(qtbot, viewer, "img segmentation", timeout=60000)
    assert set(np.unique(seg.data)) <= {127, 255}
    assert w.probe.meta.feature_mode == "hr" and w.probe.meta.backbone == "test_dinov2_tiny14_reg"


def test_missing_weights_is_an_error_message_not_a_crash(make_napari_viewer, qtbot, sync, small,
                                                         monkeypatch, tmp_path):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    image, scribbles, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.set_features("hr", "dinov2_vits14", "official")
    layer = w.new_scribble_layer()
    paint(layer, scribbles)
    qtbot.waitUntil(lambda: w.status.text().startswith("error"), timeout=20000)
    assert "img segmentation" not in viewer.layers
    assert (layer.data > 0).sum() == (scribbles > 0).sum()  # no stroke lost


def test_threaded_run_follows_newer_strokes(make_napari_viewer, qtbot, small, monkeypatch):
    """Without DINOSEG_SYNC: runs go through thread_worker; the last stroke wins."""
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    image, scribbles, _ = small
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.classifier_combo.setCurrentIndex(w.classifier_combo.findData("linear"))
    layer = w.new_scribble_layer()
    paint(layer, scribbles)
    seg = wait_for_layer(qtbot, viewer, "img segmentation", timeout=30000)
    layer.data_setitem((np.array([40, 41, 42]), np.array([40, 40, 40])), 9)  # a third class
    qtbot.waitUntil(lambda: w.probe is not None and 9 in w.probe.meta.class_values,
                    timeout=30000)
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert seg.data[40, 40] == 9 or 9 in np.unique(viewer.layers["img segmentation"].data)
