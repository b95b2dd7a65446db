"""What keeps the GUI thread free (issue 13 item 4): warm-up off the GUI thread, layers added one
per turn of the event loop, layers reused instead of removed, saved work restored threaded.

The stall figures themselves are a benchmark (``tests/benchmarks/bench_gui_stalls.py``), never
asserted here. Run under Xvfb:
``xvfb-run -a python -m pytest tests/napari/test_gui_thread_work.py``.
"""

from __future__ import annotations

import shutil
import sys
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_warm_up_imports_off_the_gui_thread(monkeypatch):
    import napari_dinoseg._widgets.common.warmup as W

    where: list[bool] = []
    real = W._labels

    def spy() -> None:
        where.append(threading.current_thread() is threading.main_thread())
        real()

    monkeypatch.setattr(W, "_JOBS", {**W._JOBS, "labels": spy})
    monkeypatch.setattr(W, "_threads", {})
    thread = W.warm_up("labels")
    assert W.warm_up("labels") is thread  # once per session
    thread.join(120)
    assert where == [False] and W.warmed_up()
    assert "pandas" in sys.modules and "skimage.color.colorconv" in sys.modules
    W.warm_up("segment").join(120)  # the scribble dock's: its first training's imports too
    assert "sklearn.ensemble" in sys.modules and W.warmed_up()


def test_warm_up_later_waits_for_the_event_loop(qtbot, monkeypatch):
    import napari_dinoseg._widgets.common.warmup as W

    started: list[str] = []
    monkeypatch.setattr(W, "_threads", {})
    monkeypatch.setattr(W, "warm_up", lambda kind="labels": started.append(kind))
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    W.warm_up_later("labels")
    assert W.warmed_up()  # nothing in sync mode (tests)
    monkeypatch.delenv("DINOSEG_SYNC")
    W.warm_up_later("labels")
    assert not started and not W.warmed_up()  # asked for: pending until the loop turns
    qtbot.waitUntil(lambda: started == ["labels"], timeout=5000)
    W._pending.clear()


def test_in_steps_runs_one_step_per_turn_of_the_event_loop(qtbot, monkeypatch):
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.common.qt_helpers import in_steps

    log: list[str] = []
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    in_steps(None, lambda: log.append("a"), lambda: log.append("b"))
    assert log == ["a", "b"]  # inline in sync mode

    monkeypatch.delenv("DINOSEG_SYNC")
    log.clear()

    def first() -> None:
        log.append("first")
        QTimer.singleShot(0, lambda: log.append("loop turned"))

    in_steps(None, first, lambda: log.append("second"))
    assert log == []  # nothing runs inside the caller's callback
    qtbot.waitUntil(lambda: "second" in log, timeout=5000)
    assert log == ["first", "loop turned", "second"]


def test_in_steps_stops_when_the_viewer_closes(make_napari_viewer, qtbot, monkeypatch):
    from napari_dinoseg._widgets.common.qt_helpers import in_steps

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    log: list[str] = []
    in_steps(viewer, lambda: (log.append("first"), viewer.close()),
             lambda: log.append("after close"))
    qtbot.waitUntil(lambda: log == ["first"], timeout=5000)
    qtbot.wait(50)
    assert log == ["first"]  # nothing runs against a closed viewer


@pytest.fixture
def photos(tmp_path):
    import imageio.v3 as iio

    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(2)
    for i, (h, w) in enumerate([(48, 64), (40, 40)]):
        img = (rng.random((h, w, 3)) * 50).astype(np.uint8)
        iio.imwrite(d / f"im{i}.png", img)
    return d


def test_boxes_dock_reuses_its_layers_from_image_to_image(make_napari_viewer, qtbot, photos,
                                                          monkeypatch):
    """Removing a napari layer runs a full garbage collection on the GUI thread: the next image
    goes into the same image and Shapes layers, with its own boxes, and edits land on it."""
    from headless.boxes import Box
    from headless.boxes.curation import BoxCuration
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)  # threaded, as for a user
    saved = Box(3, 4, 20, 30, score=0.5, source="lost")
    BoxCuration.for_folder(photos).save_automatic("im1.png", [saved], (40, 40), "lost")
    viewer = make_napari_viewer()
    w = BoxesWidget(viewer)
    qtbot.addWidget(w)
    w.set_folder(photos)
    qtbot.waitUntil(lambda: w.shapes_layer is not None and w.current_image == "im0.png",
                    timeout=20000)
    image_layer, shapes, n_layers = w.shapes.image_layer, w.shapes_layer, len(viewer.layers)
    w.next_image()
    qtbot.waitUntil(lambda: w.current_image == "im1.png" and w.current_boxes() == [saved],
                    timeout=20000)
    assert w.shapes.image_layer is image_layer and w.shapes_layer is shapes
    assert len(viewer.layers) == n_layers
    assert image_layer.name == "im1.png" and image_layer.data.shape == (40, 40, 3)
    assert "im1.png" in shapes.name and shapes.metadata["dinoseg_boxes"]["images"] == ["im1.png"]
    assert list(shapes.features["source"]) == ["lost"]
    # an edit now is an edit of im1.png, and im0.png keeps its (no) boxes
    shapes.add_rectangles(np.array([[30.5, 30.5], [35.5, 38.5]]))
    assert w.status_of("im1.png") == "edited" and w.status_of("im0.png") == "none"
    assert list(shapes.features["source"]) == ["lost", "user"]


def test_restore_adds_saved_layers_threaded(make_napari_viewer, qtbot, shared_data, tmp_path,
                                            monkeypatch):
    """Saved work comes back threaded (files read in a worker, one layer per turn) and the
    restored scribble layer is selected in paint mode."""
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    d = shared_data / "scribbles"
    path = tmp_path / "three.tif"
    shutil.copy(d / "3.tif", path)
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    from headless.images import read_labels

    scribbles = read_labels(d / "3_labels.tif")
    viewer = make_napari_viewer()
    viewer.open(str(path))
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    layer = w.new_scribble_layer()
    for v in (127, 255):
        rows, cols = np.nonzero(scribbles == v)
        layer.data_setitem((rows, cols), v)
    qtbot.waitUntil(lambda: "three segmentation" in viewer.layers, timeout=30000)
    w.flush_saves()
    viewer.close()

    monkeypatch.delenv("DINOSEG_SYNC")
    again = make_napari_viewer()
    again.open(str(path))
    w2 = SegmentWidget(again)
    qtbot.addWidget(w2)
    qtbot.waitUntil(lambda: "three segmentation" in again.layers and w2.probe is not None
                    and "restored" in w2.status.text(), timeout=30000)
    restored = again.layers["three scribbles"]
    np.testing.assert_array_equal(restored.data, scribbles)
    assert again.layers.selection.active is restored and restored.mode == "paint"


def test_new_scribble_layer_threaded_is_ready_to_paint(make_napari_viewer, qtbot, monkeypatch):
    """Threaded, the brush comes a turn after the layer (two short GUI steps, not one long)."""
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    layer = w.new_scribble_layer()
    qtbot.waitUntil(lambda: layer.mode == "paint", timeout=5000)
    assert viewer.layers.selection.active is layer and layer.selected_label == 1
    assert w.new_scribble_layer() is layer and layer.mode == "paint"  # again: the same layer


def test_progress_bar_only_for_jobs_that_last(qtbot, monkeypatch):
    """napari's progress bar costs the GUI thread 50-100 ms to make: a quick threaded job gets
    none; one that runs past ``BAR_DELAY_MS`` gets one, showing its last progress, closed."""
    import time

    import napari_dinoseg._widgets.common.workers as workers
    from headless.progress import Progress

    made: list = []

    class Bar:
        def __init__(self, total: int = 0, desc: str = "") -> None:
            self.total, self.n, self.desc, self.closed = total, 0, desc, False
            made.append(self)

        def set_description(self, text: str) -> None:
            self.desc = text

        def refresh(self) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    def job(seconds: float):
        yield Progress(1, 4, "step")
        time.sleep(seconds)
        return seconds

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    monkeypatch.setattr(workers, "napari_progress", Bar)
    results: list = []
    workers.start(job(0.0), results.append, "quick")
    qtbot.waitUntil(lambda: results == [0.0], timeout=10_000)
    qtbot.wait(workers.BAR_DELAY_MS + 200)
    assert made == []
    workers.start(job(1.5), results.append, "slow")
    qtbot.waitUntil(lambda: len(results) == 2, timeout=10_000)
    assert len(made) == 1 and made[0].closed
    assert (made[0].total, made[0].n, made[0].desc) == (4, 1, "slow: step")


def test_probability_layers_are_added_one_per_turn(make_napari_viewer, qtbot, monkeypatch):
    """Each new probability layer costs napari ~100 ms of GUI thread: with several classes they
    come one per turn of the event loop (the viewer repaints in between), hidden, each with its
    class's probabilities; the segmentation layer comes at once, and the selection stays."""
    from qtpy.QtCore import QTimer

    from headless.segment.workflow.segmenter import Segmentation
    from napari_dinoseg._widgets.segment.layers import write_segmentations

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 20), np.uint8), name="img")
    scribbles = viewer.add_labels(np.zeros((16, 20), np.uint8), name="s")
    proba = np.random.default_rng(0).dirichlet(np.ones(3), (16, 20)).astype(np.float32)
    seg = Segmentation(labels=(proba.argmax(-1) + 1).astype(np.uint8), proba=proba,
                       class_values=[1, 2, 3], class_names=["a", "b", "c"])
    log: list[str] = []
    viewer.layers.events.inserted.connect(lambda e: log.append(e.value.name))
    ticker = QTimer()
    ticker.timeout.connect(lambda: log.append("tick") if log and log[-1] != "tick" else None)
    ticker.start(0)
    write_segmentations(viewer, [seg], None, "img", probabilities=True)
    assert log == ["img segmentation"]  # the probabilities are not added in this callback
    names = [f"img p({c})" for c in "abc"]
    qtbot.waitUntil(lambda: all(n in viewer.layers for n in names), timeout=5000)
    ticker.stop()
    added = [entry for entry in log if entry != "tick"]
    assert added == ["img segmentation", *names]
    assert all(log[log.index(a) + 1] == "tick" for a in added[:-1])  # a turn between adds
    for k, n in enumerate(names):
        layer = viewer.layers[n]
        assert not layer.visible and layer.metadata["class_index"] == k
        np.testing.assert_array_equal(layer.data, proba[..., k])
    assert viewer.layers.selection.active is scribbles
    write_segmentations(viewer, [seg], None, "img", probabilities=True)  # again: in place
    qtbot.wait(50)
    assert len(viewer.layers) == 6


def test_warm_up_keeps_full_collections_out_of_its_imports(monkeypatch):
    """A full collection during the warm-up's imports scanned ~500 000 live objects holding the
    GIL (100-300 ms of frozen viewer): the collector is off while warm-ups run (two at once:
    on again after the last), nothing stays frozen, and a host's own frozen objects are left
    alone (the collector too)."""
    import gc

    import napari_dinoseg._widgets.common.collector as C
    import napari_dinoseg._widgets.common.warmup as W

    assert gc.isenabled() and gc.get_freeze_count() == 0
    seen: list[tuple[str, bool]] = []
    first_in, release = threading.Event(), threading.Event()

    def slow() -> None:
        seen.append(("slow", gc.isenabled()))
        first_in.set()
        release.wait(10)

    def quick() -> None:
        kept = [{} for _ in range(200_000)]  # long-lived objects, as imports make
        seen.append(("quick", gc.isenabled()))
        assert len(kept) == 200_000

    a = threading.Thread(target=W._run, args=(slow,))
    a.start()
    first_in.wait(10)
    W._run(quick)
    assert not gc.isenabled()  # the slow warm-up still runs
    release.set()
    a.join(10)
    assert seen == [("slow", False), ("quick", False)]
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert C._state == {"blocks": 0, "paused": False}
    import headless.features.backbones as B
    import headless.sam as S
    from napari_dinoseg._widgets.common import models
    from napari_dinoseg._widgets.sam import controller

    # a dock's model is built the same way (a first load ran one too); not its download
    seen.clear()
    monkeypatch.setattr(models, "ensure_official_weights",
                        lambda *a: seen.append(("download", gc.isenabled())))
    monkeypatch.setattr(B, "load_backbone", lambda *a, **k: seen.append(("build", gc.isenabled())))
    models.load_backbone_for_dock("test_vit", "official", "cpu")
    monkeypatch.setattr(S, "resolve_weights", lambda *a: seen.append(("fetch", gc.isenabled())))
    monkeypatch.setattr(S, "load_sam", lambda *a, **k: seen.append(("sam", gc.isenabled())))
    controller.load_sam_for_dock("test_sam_tiny", "random", "cpu")
    assert seen == [("download", True), ("build", False), ("fetch", True), ("sam", False)]
    assert gc.isenabled()

    kept = [[] for _ in range(10)]
    calls: list[str] = []
    freeze, unfreeze = gc.freeze, gc.unfreeze
    gc.freeze()  # a host application that froze its own objects (before forking, say)
    try:
        frozen = gc.get_freeze_count()
        monkeypatch.setattr(gc, "freeze", lambda: (calls.append("freeze"), freeze()))
        monkeypatch.setattr(gc, "unfreeze", lambda: (calls.append("unfreeze"), unfreeze()))
        W._run(lambda: seen.append(("host froze", gc.isenabled())))
        assert seen[-1] == ("host froze", True) and not calls  # neither frozen nor released
        # (a frozen object that another thread drops meanwhile leaves the count: at most)
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        unfreeze()
    assert kept


def test_new_shapes_layer_is_shown_a_turn_after_it_is_added(make_napari_viewer, qtbot,
                                                            monkeypatch):
    """A Shapes layer's first paint builds 13 shader programs (~120 ms here): added (or
    refilled) hidden, it is shown on the next turn, so its add and its first paint are two
    stalls, not one."""
    from headless.boxes import Box
    from napari_dinoseg._widgets.boxes.shapes_editor import ShapesEditor

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    editor = ShapesEditor(viewer, on_edit=lambda: None)
    editor.show_image(np.zeros((40, 40), np.uint8), "im.png")
    layer = editor.show("im.png", [Box(3, 4, 20, 30, score=0.5, source="lost")], (40, 40))
    assert layer in viewer.layers and not layer.visible and layer.nshapes == 1
    qtbot.waitUntil(lambda: layer.visible, timeout=5000)
    assert layer.mode == "select"  # (napari kept the hidden layer in pan / zoom)
    two = [Box(3, 4, 20, 30, score=0.5, source="lost"), Box(1, 1, 9, 9, score=0.4, source="lost")]
    assert editor.show("im.png", two, (40, 40)) is layer  # refilled in place, hidden a turn
    assert not layer.visible and layer.nshapes == 2
    qtbot.waitUntil(lambda: layer.visible, timeout=5000)
    layer.visible = False  # the user hides the boxes: a refill keeps them hidden
    editor.show("im.png", [], (40, 40))
    qtbot.wait(50)
    assert not layer.visible and layer.nshapes == 0


def test_new_layer_visual_parts_are_drawn_one_per_turn(make_napari_viewer, qtbot,
                                                       monkeypatch):
    """A Shapes layer's first paint compiled the programs of all five parts of its visual
    (faces, highlights, lines, vertices, text: 100-120 ms): shown, its first part is drawn
    alone and the others are shown one per turn after it."""
    from napari.layers import Shapes
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.common.layers import add_in_turns

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    layer = add_in_turns(viewer, Shapes([np.array([[2.0, 2.0], [20.0, 30.0]])],
                                        shape_type="rectangle"), select=False)
    parts = viewer.window._qt_viewer.canvas.layer_to_visual[layer].node._subvisuals
    assert len(parts) == 5 and not layer.visible
    log: list[tuple[bool, ...]] = []
    ticker = QTimer()
    ticker.timeout.connect(lambda: log.append((layer.visible, *(p.visible for p in parts))))
    ticker.start(0)
    qtbot.waitUntil(lambda: layer.visible and all(p.visible for p in parts), timeout=5000)
    ticker.stop()
    seen = [entry for i, entry in enumerate(log) if i == 0 or entry != log[i - 1]]
    assert seen[0] == (False, True, True, True, True, True)  # hidden: parts untouched
    assert seen[1] == (True, True, False, False, False, False)  # shown: its first part alone
    assert [sum(entry[1:]) for entry in seen[1:]] == [1, 2, 3, 4, 5]  # one more per turn


def test_status_bar_names_the_image_shown_after_a_layer_is_reused(make_napari_viewer, qtbot):
    """napari rewrites its status bar only when the mouse moves: with the layers reused, it
    kept the previous image's name until then."""
    from napari_dinoseg._widgets.boxes.shapes_editor import ShapesEditor

    viewer = make_napari_viewer()
    editor = ShapesEditor(viewer, on_edit=lambda: None)
    layer = editor.show_image(np.zeros((40, 40), np.uint8), "first.png")
    viewer.layers.selection.active = layer
    viewer.mouse_over_canvas = True
    qtbot.waitUntil(lambda: layer._slicing_state._loaded, timeout=5000)
    viewer.cursor.position = (5, 5)
    viewer.update_status_from_cursor()  # what a mouse move over the canvas does
    assert "first.png" in str(viewer.status)
    assert editor.show_image(np.ones((40, 40), np.uint8), "second.png") is layer  # reused
    assert "second.png" in str(viewer.status) and "first.png" not in str(viewer.status)


def test_feature_views_are_added_one_per_turn(make_napari_viewer, qtbot, monkeypatch):
    """Four views in the result's callback froze the viewer ~0.5 s (~120 ms of napari per new
    layer): threaded, they come one per turn of the event loop, the status line with the last."""
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.features.panel import FeaturesWidget

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="img")
    widget = FeaturesWidget(viewer)
    qtbot.addWidget(widget)
    widget.backbone_combo.setCurrentText("test_dino_tiny16")
    widget.weights_edit.setText("random")
    log: list[str] = []
    viewer.layers.events.inserted.connect(lambda e: log.append(e.value.name))
    ticker = QTimer()
    ticker.timeout.connect(lambda: log.append("tick") if log and log[-1] != "tick" else None)
    ticker.start(0)
    widget.run()
    qtbot.waitUntil(lambda: widget.status.text().startswith("attn mean of img"), timeout=60_000)
    ticker.stop()
    added = [entry for entry in log if entry != "tick"]
    assert len(added) == 4 and added[0].startswith("attn mean")
    assert all(log[log.index(a) + 1] == "tick" for a in added[:-1])  # a turn between adds


def test_labels_layer_added_in_turns(make_napari_viewer, qtbot, monkeypatch):
    """napari added a Labels layer in one piece (its visuals, two tool overlays, the selection
    change, its first paint: 100-140 ms). Threaded, it comes hidden with its overlays hidden,
    is shown on the next turn, its overlays after that; an output leaves the selection alone."""
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.common.layers import TOOL_OVERLAYS, add_labels

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    changes: list[object] = []  # (napari's layer list also emits empty changes)
    viewer.layers.selection.events.changed.connect(
        lambda e: changes.append(e) if e.added or e.removed else None)
    log: list[str] = []
    ticker = QTimer()
    ticker.timeout.connect(lambda: log.append("tick"))
    ticker.start(0)
    layer = add_labels(viewer, np.ones((32, 32), np.uint8), select=False, name="out")
    overlays = [layer._overlays[name] for name in TOOL_OVERLAYS]
    assert layer in viewer.layers and not layer.visible
    assert not any(o.visible for o in overlays)
    assert viewer.layers.selection.active is image and not changes  # never selected
    layer.events.visible.connect(lambda e: log.append("shown"))
    for name, overlay in zip(TOOL_OVERLAYS, overlays):
        overlay.events.visible.connect(lambda e, name=name: log.append(name))
    qtbot.waitUntil(lambda: all(o.visible for o in overlays), timeout=5000)
    ticker.stop()
    assert layer.visible
    steps = [entry for entry in log if entry != "tick"]
    assert steps == ["shown", *TOOL_OVERLAYS]
    assert all(log[log.index(s) - 1] == "tick" for s in steps)  # each on a turn of its own

    hidden = add_labels(viewer, np.ones((32, 32), np.uint8), name="hidden", visible=False)
    assert viewer.layers.selection.active is image  # select=True: selected on a later turn
    qtbot.waitUntil(lambda: hidden._overlays["brush_stroke"].visible, timeout=5000)
    assert viewer.layers.selection.active is hidden
    assert not hidden.visible  # asked for hidden: stays hidden


def test_layer_controls_are_made_a_turn_later_or_when_napari_needs_them(
        make_napari_viewer, qtbot, monkeypatch):
    """napari made a new layer's controls panel in its insert (14-32 ms of 58-85): threaded,
    they come on a later turn; selected or removed before that, the layer gets them at once
    (napari's panel shows them, napari's removal drops them: no KeyError)."""
    from napari_dinoseg._widgets.common.layers import add_image

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    controls = viewer.window._qt_viewer.controls
    first = add_image(viewer, np.zeros((16, 16), np.uint8), name="first")
    assert first in viewer.layers and first not in controls.widgets
    qtbot.waitUntil(lambda: first in controls.widgets, timeout=5000)
    qtbot.waitUntil(lambda: viewer.layers.selection.active is first, timeout=5000)
    assert controls.currentWidget() is controls.widgets[first]

    picked = add_image(viewer, np.zeros((16, 16), np.uint8), select=False, name="picked")
    assert picked not in controls.widgets
    viewer.layers.selection.active = picked  # the user clicks it at once
    assert controls.currentWidget() is controls.widgets[picked]

    gone = add_image(viewer, np.zeros((16, 16), np.uint8), select=False, name="gone")
    viewer.layers.remove(gone)  # removed at once: napari drops the controls it asked for
    assert gone not in controls.widgets
    qtbot.wait(100)
    assert gone not in controls.widgets and set(controls.widgets) == {first, picked}
    with pytest.raises(KeyError):  # any other missing layer: napari's KeyError as before
        controls.widgets[object()]


def test_layer_to_paint_on_can_be_painted_while_hidden(make_napari_viewer, qtbot, monkeypatch):
    """napari slices only visible layers and cannot paint into a Labels layer never sliced (an
    IndexError): a paintable layer is sliced while hidden, painted before its first turn, and
    shown a turn later with the paint on it; not selected (select=False)."""
    from napari_dinoseg._widgets.common.layers import add_labels

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 32)), name="image")
    layer = add_labels(viewer, np.zeros((32, 32), np.uint8), select=False, paintable=True,
                       name="scribbles")
    assert not layer.visible and viewer.layers.selection.active is image
    layer.data_setitem((np.array([3, 4]), np.array([5, 5])), 2)
    assert layer.data[3, 5] == 2 and layer.data[4, 5] == 2
    qtbot.waitUntil(lambda: layer.visible, timeout=5000)
    assert layer._slice.image.raw[3, 5] == 2  # the slice shown holds the paint
    layer.data_setitem((np.array([6]), np.array([5])), 1)
    assert layer.data[6, 5] == 1


def test_keep_selection_leaves_an_unchanged_selection_alone(make_napari_viewer):
    """Each selection change costs napari 20-40 ms of events: nothing changed, nothing is
    restored."""
    from napari_dinoseg._widgets.common.selection import keep_selection

    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((8, 8)), name="a")
    changes: list[object] = []
    viewer.layers.selection.events.changed.connect(
        lambda e: changes.append(e) if e.added or e.removed else None)
    with keep_selection(viewer):
        pass
    assert not changes
    with keep_selection(viewer):
        viewer.add_image(np.zeros((8, 8)), name="b")  # napari selects it ...
    assert viewer.layers.selection.active is a and list(viewer.layers.selection) == [a]


def test_dock_sections_take_their_places_one_per_turn(make_napari_viewer, qtbot, monkeypatch):
    """Qt polishes and lays out a whole dock as napari adds it (the Train dock: ~150 widgets):
    the first section is in place at once, the others come one per turn, in order."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QLabel, QWidget

    from napari_dinoseg._widgets.common.scrolling import fill_in_turns, scroll_layout

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    panel = QWidget()
    qtbot.addWidget(panel)
    layout = scroll_layout(panel)
    parts = [QLabel(f"part {i}") for i in range(4)]
    log: list[object] = []
    ticker = QTimer()
    ticker.timeout.connect(lambda: log.append(layout.count()))
    ticker.start(0)
    fill_in_turns(layout, parts, viewer)
    assert layout.count() == 2 and layout.itemAt(0).widget() is parts[0]  # + the stretch
    qtbot.waitUntil(lambda: layout.count() == 5, timeout=5000)
    ticker.stop()
    assert [layout.itemAt(i).widget() for i in range(4)] == parts
    assert layout.itemAt(4).spacerItem() is not None  # the stretch stays last
    counts = [c for c in log if isinstance(c, int)]
    assert all(b - a <= 1 for a, b in zip(counts, counts[1:]))  # never two in one turn


def test_caption_glyphs_warm_up_a_few_per_turn_and_wait_for_jobs(make_napari_viewer, qtbot,
                                                                  monkeypatch):
    """vispy draws each new glyph on the CPU (~5 ms): a first Shapes / Points layer spent
    ~70 ms of its first paint on them. They are made beforehand, a few per turn, never while a
    dock's job runs (it competes for the GIL)."""
    import napari_dinoseg._widgets.common.warmup as W
    from napari_dinoseg._widgets.common import collector as C

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    glyphs = "ŒÆØ§¶Ð"  # none drawn before in this process (napari's font may be shared)
    monkeypatch.setattr(W, "GLYPHS", glyphs)
    monkeypatch.setattr(W, "WARMUP_DELAY_MS", 1)
    monkeypatch.setattr(C, "_activity", {"running": 1, "last": 0.0})  # a job runs
    viewer = make_napari_viewer()
    font = W._canvas_font(viewer)
    assert font is not None
    made = set(font._glyphs)
    assert not set(glyphs) & made
    W.warm_up_glyphs_later(viewer)
    qtbot.wait(3 * W.STEPS_WAIT_MS)
    assert set(font._glyphs) == made and not W.warmed_up()  # waiting for the job
    C._activity["running"] = 0
    qtbot.waitUntil(W.warmed_up, timeout=10_000)
    assert set(glyphs) <= set(font._glyphs)


def test_brush_cursor_is_made_and_drawn_before_the_first_paint_mode(make_napari_viewer, qtbot,
                                                                   monkeypatch):
    """napari makes its brush circle (two ellipse visuals) as paint mode first shows it, and
    the canvas compiles their programs on that paint: one 110-130 ms stall of the first "New".
    The scribble dock's warm-up makes and draws it beforehand (transparent, then hidden again),
    once per viewer, never while a job runs; paint mode still shows it after."""
    import napari_dinoseg._widgets.common.warmup as W
    from napari_dinoseg._widgets.common import collector as C

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    monkeypatch.setattr(W, "WARMUP_DELAY_MS", 1)
    monkeypatch.setattr(W, "_done", type(W._done)())
    monkeypatch.setattr(C, "_activity", {"running": 1, "last": 0.0})  # a job runs
    viewer = make_napari_viewer(show=True)
    canvas = viewer.window._qt_viewer.canvas
    overlay = viewer.canvas.overlays["_brush_circle"]
    assert overlay not in canvas._viewer_overlay_to_visual  # napari makes it on first show
    drawn: list[int] = []
    canvas._scene_canvas.events.draw.connect(lambda e: drawn.append(overlay.visible))
    W.warm_up_brush_later(viewer)
    qtbot.wait(3 * W.STEPS_WAIT_MS)
    assert overlay not in canvas._viewer_overlay_to_visual and not W.warmed_up()  # job runs
    C._activity["running"] = 0
    qtbot.waitUntil(W.warmed_up, timeout=10_000)
    assert overlay in canvas._viewer_overlay_to_visual  # made ...
    assert True in drawn  # ... and drawn while shown
    assert not overlay.visible and overlay.opacity == 1.0  # hidden again, as it was
    W.warm_up_brush_later(viewer)
    assert W.warmed_up()  # once per viewer
    labels = viewer.add_labels(np.zeros((64, 64), np.uint8))
    labels.mode = "paint"
    assert overlay.visible  # napari's paint mode shows it as before


def test_steps_of_two_callers_share_one_queue(make_napari_viewer, qtbot, monkeypatch):
    """Two chains of steps for one viewer (a layer's own turns, the dock's next layer) fired in
    the same turn: they join one queue, one step per turn, in order; steps asked for by a
    running step (a layer's showing) come next, before those already waiting."""
    from qtpy.QtCore import QTimer

    from napari_dinoseg._widgets.common.qt_helpers import in_steps

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    viewer = make_napari_viewer()
    log: list[str] = []
    ticker = QTimer()
    ticker.timeout.connect(lambda: log.append("tick") if log and log[-1] != "tick" else None)
    ticker.start(0)

    def a1() -> None:
        log.append("a1")
        in_steps(viewer, lambda: log.append("nested"))  # asked for from inside a step

    in_steps(viewer, a1, lambda: log.append("a2"))
    in_steps(viewer, lambda: log.append("b1"))
    qtbot.waitUntil(lambda: "b1" in log, timeout=5000)
    ticker.stop()
    steps = [entry for entry in log if entry != "tick"]
    assert steps == ["a1", "nested", "a2", "b1"]
    assert all(log[log.index(s) + 1] == "tick" for s in steps[:-1])  # a turn between steps
