"""The object-boxes dock in a real viewer: compute, edit, save at once, restore, verify, export.

Run under Xvfb: ``xvfb-run -a python -m pytest tests/napari/test_boxes_widget.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headless.boxes import Box, read_boxes

pytestmark = pytest.mark.gui


@pytest.fixture
def folder(tmp_path) -> Path:
    import imageio.v3 as iio

    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(48, 64), (40, 40), (36, 52)]):
        img = (rng.random((h, w, 3)) * 50).astype(np.uint8)
        img[8:24, 10:30] = 230
        iio.imwrite(d / f"im{i}.png", img)
    (d / "readme.md").write_text("not an image")
    return d


@pytest.fixture
def widget(make_napari_viewer, monkeypatch):
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    viewer = make_napari_viewer()
    w = BoxesWidget(viewer)
    w.backbone_combo.setCurrentText("test_dino_tiny16")
    w.weights_combo.setCurrentText("random")
    return w


PLANTED = [Box(10, 8, 30, 24, score=0.75, source="lost"),
           Box(2, 2, 8, 6, score=0.25, source="lost")]


@pytest.fixture
def planted(monkeypatch):
    """A localisation that returns two known boxes (the real methods have their own tests)."""
    import headless.boxes.localize

    def fake(method, features, index=0, which="k", orig_hw=None, **params):
        return list(PLANTED)

    monkeypatch.setattr(headless.boxes.localize, "localize", fake)


def _saved(folder: Path, name: str) -> dict:
    return json.loads((folder / ".dinoseg" / "images" / name / "boxes.json").read_text())


def test_compute_current_image_with_tiny_backbone(widget, folder):
    widget.set_folder(folder)
    assert widget.current_image == "im0.png"
    assert widget.image_list.count() == 3  # readme.md skipped
    assert widget.status_of("im0.png") == "none"
    widget.compute_current()
    boxes = widget.current_boxes()
    layer = widget.shapes_layer
    assert layer is not None and layer in widget.viewer.layers
    assert all(b.source == "lost" and b.score is not None for b in boxes)
    assert all(0 <= b.x0 < b.x1 <= 64 and 0 <= b.y0 < b.y1 <= 48 for b in boxes)
    assert widget.status_of("im0.png") == "automatic"
    saved = _saved(folder, "im0.png")
    # napari keeps vertices in float32: the layer shows the saved boxes to 1e-5 px
    np.testing.assert_allclose([Box.from_dict(b).xyxy() for b in saved["boxes"]],
                               [b.xyxy() for b in boxes], atol=1e-4)
    assert [Box.from_dict(b).score for b in saved["boxes"]] == [b.score for b in boxes]
    assert saved["method"] == "lost" and saved["status"] == "automatic"
    # method and score are shown as text on each rectangle
    # selecting a shape is not an edit
    layer.selected_data = {0}
    layer.selected_data = set()
    assert widget.status_of("im0.png") == "automatic"
    assert all(c.startswith("lost ") for c in layer.features["caption"])
    assert widget._worker is None and widget.compute_image_btn.isEnabled()


def test_edits_are_saved_at_once_exported_and_restored(widget, folder, planted, tmp_path):
    from pycocotools.coco import COCO

    widget.set_folder(folder)
    widget.compute_current()
    layer = widget.shapes_layer
    assert widget.current_boxes() == PLANTED
    # rectangles hug the pixels: napari centres pixel (r, c) at (r, c)
    corners = np.asarray(layer.data[0])
    assert corners.min(axis=0).tolist() == [7.5, 9.5] and corners.max(axis=0).tolist() == [
        23.5, 29.5]

    # move the first rectangle by 2 rows and 3 columns, resize the second
    data = [np.asarray(d).copy() for d in layer.data]
    data[0] = data[0] + np.array([2.0, 3.0])
    data[1] = np.array([[1.5, 1.5], [1.5, 11.5], [9.5, 11.5], [9.5, 1.5]])
    layer.data = data
    moved = [Box(13, 10, 33, 26, score=0.75, source="lost"),
             Box(2, 2, 12, 10, score=0.25, source="lost")]
    assert widget.status_of("im0.png") == "edited"
    assert [Box.from_dict(b) for b in _saved(folder, "im0.png")["boxes"]] == moved

    # add one while a method box is selected: it is still a user box
    layer.selected_data = {0}
    layer.add_rectangles(np.array([[30.5, 40.5], [40.5, 60.5]]))
    added = Box(41, 31, 61, 41, source="user")
    assert [Box.from_dict(b) for b in _saved(folder, "im0.png")["boxes"]] == moved + [added]
    assert layer.features["caption"].iloc[-1] == "user"

    # delete the second
    layer.selected_data = {1}
    layer.remove_selected()
    expected = [moved[0], added]
    assert [Box.from_dict(b) for b in _saved(folder, "im0.png")["boxes"]] == expected
    assert widget.current_boxes() == expected

    # export: the COCO file holds exactly the edited boxes
    out = tmp_path / "curated.json"
    widget.export("coco", out)
    coco = COCO(str(out))
    img = next(i for i in coco.imgs.values() if i["file_name"] == "im0.png")
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
    assert [a["bbox"] for a in anns] == [[13, 10, 20, 16], [41, 31, 20, 10]]
    assert read_boxes(out).boxes == {"im0.png": expected}  # other images hold no saved boxes
    widget.export("voc", tmp_path / "voc")
    widget.export("csv", tmp_path / "c.csv")
    assert read_boxes(tmp_path / "voc").boxes["im0.png"] == expected
    assert read_boxes(tmp_path / "c.csv").boxes["im0.png"] == expected

    # leave and come back: the edits are restored
    widget.next_image()
    assert widget.current_image == "im1.png" and widget.current_boxes() == []
    widget.previous_image()
    assert widget.current_image == "im0.png" and widget.current_boxes() == expected
    assert "edited" in widget.image_list.item(0).text()

    widget.mark_verified()
    assert widget.status_of("im0.png") == "verified"
    assert "verified" in widget.image_list.item(0).text()

    # the whole folder: the verified image keeps its boxes, the others get the method's
    widget.compute_all()
    assert widget.status_of("im0.png") == "verified"
    assert [Box.from_dict(b) for b in _saved(folder, "im0.png")["boxes"]] == expected
    assert widget.status_of("im1.png") == "automatic"
    assert widget.status_of("im2.png") == "automatic"
    assert widget.current_boxes() == expected
    # computing the verified image again is refused unless asked
    widget.compute_current()
    assert widget.current_boxes() == expected


def test_reopening_the_project_restores_boxes(make_napari_viewer, monkeypatch, folder):
    from headless.boxes.curation import BoxCuration
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    # automatic boxes saved by an earlier run (e.g. `dinoseg boxes --project`)
    BoxCuration.for_folder(folder).save_automatic("im2.png", PLANTED, (52, 36), "lost")
    w1 = BoxesWidget(make_napari_viewer())
    w1.set_folder(folder)
    w1.open_image("im2.png")
    assert w1.current_boxes() == PLANTED
    assert "automatic" in w1.image_list.item(2).text()
    layer = w1.shapes_layer
    layer.selected_data = {0}
    layer.remove_selected()
    assert w1.current_boxes() == [PLANTED[1]]

    # a new session (another viewer, another widget) on the same folder
    w2 = BoxesWidget(make_napari_viewer())
    w2.set_folder(folder)
    assert "edited" in w2.image_list.item(2).text()
    assert "-" in w2.image_list.item(0).text()
    w2.image_list.setCurrentRow(2)  # choosing it in the list opens it
    assert w2.current_image == "im2.png"
    assert w2.current_boxes() == [PLANTED[1]]


def test_errors_are_notifications_not_crashes(widget, folder, monkeypatch, tmp_path):
    import napari_dinoseg._widgets.common.workers as workers

    errors = []
    monkeypatch.setattr(workers, "notify_error",
                        lambda d, e, actions=(): errors.append((f"{d}: {e}", actions)))
    widget.set_folder(folder)
    widget.weights_combo.setCurrentText(str(tmp_path / "missing.pth"))
    widget.compute_current()  # missing weights file: reported, nothing raised
    assert len(errors) == 1 and "missing.pth" in errors[0][0]
    assert [a[0] for a in errors[0][1]] == ["Choose a local file…"]  # offered in the dock
    assert widget.status_of("im0.png") == "none"
    assert widget.compute_image_btn.isEnabled()


def test_image_without_file_gets_boxes_in_the_layer(widget, planted):
    img = np.zeros((40, 50), np.uint16)
    widget.viewer.add_image(img, name="array")
    widget.compute_current()
    assert widget.current_image == "array"
    assert widget.current_boxes() == PLANTED
    assert widget.curation is None  # nothing written anywhere


def test_compute_runs_in_a_worker_thread(make_napari_viewer, monkeypatch, folder, planted,
                                         qtbot):
    import threading

    import headless.features.forward as forward
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    threads = []
    real = forward.extract_image  # one forward pass per image (with or without QC)

    def spy(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(forward, "extract_image", spy)
    w = BoxesWidget(make_napari_viewer())
    w.backbone_combo.setCurrentText("test_dino_tiny16")
    w.weights_combo.setCurrentText("random")
    w.set_folder(folder)
    w.compute_all()
    assert not w.compute_all_btn.isEnabled()  # busy while the worker runs
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert threads == [False, False, False]  # never on the GUI thread
    assert [w.status_of(f"im{i}.png") for i in range(3)] == ["automatic"] * 3
    # the open image's boxes are shown a turn of the event loop after its image (in_steps)
    qtbot.waitUntil(lambda: w.current_boxes() == PLANTED, timeout=10_000)
    assert "automatic" in w.image_list.item(1).text()


# -- the QC queue ---------------------------------------------------------------------------
def _plant_qc(folder: Path, u: dict[str, float]) -> None:
    """Automatic boxes with QC records, as an earlier compute (dock or CLI) saved them."""
    from headless.boxes.curation import BoxCuration

    cur = BoxCuration.for_folder(folder)
    sizes = {"im0.png": (64, 48), "im1.png": (40, 40), "im2.png": (52, 36)}
    for name, value in u.items():
        boxes = [] if value == 1.0 else [PLANTED[0]]
        cur.save_automatic(name, boxes, sizes[name], "lost",
                           details={"qc": {"uncertainty": value, "signals": {},
                                           "reasons": ["no object found"] if not boxes else []}})


def _rows(widget) -> list[str]:
    return [widget.image_list.item(i).text() for i in range(widget.image_list.count())]


def test_queue_sorts_worst_first_filters_and_steps(widget, folder):
    _plant_qc(folder, {"im0.png": 0.2, "im1.png": 1.0, "im2.png": 0.6})
    widget.set_folder(folder)
    assert widget.sort_combo.currentText() == "worst first"
    assert _rows(widget) == ["1.00  im1.png  automatic", "0.60  im2.png  automatic",
                             "0.20  im0.png  automatic"]
    assert "no object found" in widget.image_list.item(0).toolTip()
    # a folder with QC records opens on the image that most needs a human
    assert widget.current_image == "im1.png" and widget.image_list.currentRow() == 0
    widget.open_image("im0.png")
    assert widget.current_image == "im0.png"
    assert widget.image_list.currentRow() == 2  # the shown image is selected where it sits
    assert widget.next_check_btn.shortcut().toString() == "Ctrl+Shift+N"
    # next to check wraps around to the worst; Next / Previous follow the list
    widget.next_to_check()
    assert widget.current_image == "im1.png" and widget.image_list.currentRow() == 0
    widget.next_image()
    assert widget.current_image == "im2.png"
    widget.previous_image()
    assert widget.current_image == "im1.png"
    # verifying moves it out of the queue
    widget.mark_verified()
    assert widget.status_of("im1.png") == "verified"
    assert _rows(widget)[0] == "1.00  im1.png  verified"
    widget.filter_combo.setCurrentText("to check")
    assert _rows(widget) == ["0.60  im2.png  automatic", "0.20  im0.png  automatic"]
    assert widget.image_list.currentRow() == -1  # the shown image is not listed
    assert "2 of 3 image(s) to check" in widget.folder_box.queue_label.text()
    widget.next_to_check()
    assert widget.current_image == "im2.png"
    widget.next_to_check()
    assert widget.current_image == "im0.png"
    widget.next_to_check()
    assert widget.current_image == "im2.png"  # around again, past the verified one
    # choosing a row opens that image, by name (the row is not the folder index)
    widget.image_list.setCurrentRow(1)
    assert widget.current_image == "im0.png"
    # an edit changes the status in place, and keeps the image in the queue
    layer = widget.shapes_layer
    layer.selected_data = {0}
    layer.remove_selected()
    assert _rows(widget) == ["0.60  im2.png  automatic", "0.20  im0.png  edited"]
    widget.filter_combo.setCurrentText("verified")
    assert _rows(widget) == ["1.00  im1.png  verified"]
    assert not widget.next_check_btn.isEnabled()
    widget.filter_combo.setCurrentText("all")
    widget.sort_combo.setCurrentText("name")
    assert [t.split()[1] for t in _rows(widget)] == ["im0.png", "im1.png", "im2.png"]
    # a new session reads the same queue from the project
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget

    w2 = BoxesWidget(widget.viewer)
    w2.set_folder(folder)
    assert _rows(w2) == ["1.00  im1.png  verified", "0.60  im2.png  automatic",
                         "0.20  im0.png  edited"]


def test_computed_boxes_carry_their_uncertainty(widget, folder, planted):
    widget.set_folder(folder)
    assert _rows(widget) == ["  -   im0.png  -", "  -   im1.png  -", "  -   im2.png  -"]
    widget.compute_current()
    saved = _saved(folder, "im0.png")["details"]["qc"]
    assert 0.0 <= saved["uncertainty"] <= 1.0 and "signals" in saved
    assert _rows(widget)[0] == f"{saved['uncertainty']:.2f}  im0.png  automatic"
    widget.compute_all()
    for name in ("im1.png", "im2.png"):
        assert "qc" in _saved(folder, name)["details"]
    assert all(not t.startswith("  -") for t in _rows(widget))
    assert all(t.endswith("automatic") for t in _rows(widget))


def test_queue_is_read_in_a_worker_thread(make_napari_viewer, monkeypatch, folder, qtbot):
    import threading

    import headless.qc.queue as qc_queue
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget

    _plant_qc(folder, {"im0.png": 0.2, "im2.png": 0.9})
    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    threads = []
    real = qc_queue.build_queue

    def spy(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(qc_queue, "build_queue", spy)
    w = BoxesWidget(make_napari_viewer())
    w.set_folder(folder)
    qtbot.waitUntil(lambda: _rows(w)[:1] == ["0.90  im2.png  automatic"], timeout=30_000)
    # opened (a worker too), then the worst once the queue is known
    qtbot.waitUntil(lambda: w.current_image == "im2.png", timeout=30_000)
    assert threads == [False]
    assert w.image_list.currentRow() == 0
    assert _rows(w) == ["0.90  im2.png  automatic", "0.20  im0.png  automatic",
                        "  -   im1.png  -"]


def test_boxes_read_before_a_compute_saved_newer_ones_are_read_again(widget, folder, planted):
    """An image opened while a compute ran: the boxes its worker read are older than the ones
    the compute saved (before the image was shown, or between its two display steps)."""
    widget.set_folder(folder)
    stale = widget.controller.load_saved("im0.png")  # what the opening worker read: nothing
    assert stale[0] == []
    widget.compute_all()  # saves PLANTED for every image (sync mode)
    path, arr, size = widget.controller.read(0)
    writes = widget._box_writes - 1  # the read happened before the compute's result
    widget._show_read(0, path, arr, size, stale, writes=writes)
    assert widget.current_boxes() == PLANTED
