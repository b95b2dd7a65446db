"""What the docks share: controllers without Qt, the worker slot, layer picking in sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTROLLERS = ("napari_dinoseg._widgets.boxes.controller",
               "napari_dinoseg._widgets.sam.controller",
               "napari_dinoseg._widgets.train.controller",
               "napari_dinoseg._widgets.common.models",
               "napari_dinoseg._widgets.common.notices")


def test_controllers_import_without_qt_or_napari():
    code = (
        "import sys\n"
        "for name in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui'):\n"
        "    sys.modules[name] = None\n"
        "import importlib\n"
        f"for m in {CONTROLLERS!r}:\n"
        "    importlib.import_module(m)\n"
        "heavy = [m for m in ('torch', 'timm', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def _job(fail: bool = False):
    from headless.progress import Progress

    yield Progress(0, 1, "working")
    if fail:
        raise RuntimeError("no weights here")
    return 42


def test_worker_slot_busy_result_and_error_line(monkeypatch):
    import napari_dinoseg._widgets.common.workers as workers

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    errors, busy, lines, results = [], [], [], []
    monkeypatch.setattr(workers, "notify_error", lambda d, e, a=(): errors.append(f"{d}: {e}"))
    slot = workers.WorkerSlot(on_busy=lambda b: busy.append((b, slot.busy)),
                              on_status=lines.append)
    assert not slot.busy and slot.worker is None
    slot.start(_job(), results.append, "a job")
    assert results == [42] and busy == [(True, True), (False, False)] and lines == []
    assert slot.worker is None
    slot.start(_job(fail=True), results.append, "a job")
    assert results == [42] and errors == ["a job: no weights here"]
    assert lines == ["error: no weights here"] and not slot.busy
    # a dock's own failure handler replaces the error line (the notification stays)
    own = []
    slot.start(_job(fail=True), results.append, "a job", on_error=own.append)
    assert [str(e) for e in own] == ["no weights here"] and len(lines) == 1 and len(errors) == 2


@pytest.mark.gui
def test_image_combo_follows_inserts_removals_and_renames(make_napari_viewer):
    from napari_dinoseg._widgets.common.layer_picking import (
        ImageLayerPicker,
        active_image_layer,
        source_path,
    )

    viewer = make_napari_viewer()
    assert active_image_layer(viewer) is None
    a = viewer.add_image(np.zeros((8, 8)), name="a")
    picker = ImageLayerPicker(viewer)
    b = viewer.add_image(np.zeros((8, 8)), name="b")
    viewer.add_image(np.zeros((8, 8)), name="a PCA", metadata={"dinoseg_output": True})
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="labels")
    names = [picker.combo.itemText(i) for i in range(picker.combo.count())]
    assert names == ["a", "b"] and picker.name() == "a"
    picker.combo.setCurrentText("b")
    b.name = "b renamed"  # the chosen layer keeps being chosen under its new name
    assert picker.name() == "b renamed" and picker.layer() is b
    a.name = "a2"  # renaming another layer leaves the choice alone
    assert picker.name() == "b renamed"
    assert [picker.combo.itemText(i) for i in range(picker.combo.count())] == ["a2", "b renamed"]
    viewer.layers.remove(b)
    assert picker.name() == "a2"
    viewer.layers.remove(a)
    with pytest.raises(ValueError, match="Open an image"):
        picker.layer("Open an image first.")
    c = viewer.add_image(np.zeros((8, 8)), name="c")
    assert active_image_layer(viewer) is c and source_path(c) is None


@pytest.mark.gui
def test_sam_dock_combos_follow_a_renamed_labels_layer(make_napari_viewer):
    from napari_dinoseg._widgets.sam.panel import SamWidget

    viewer = make_napari_viewer()
    w = SamWidget(viewer)
    masks = viewer.add_labels(np.zeros((8, 8), np.uint8), name="masks")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="other")
    w.labels_combo.setCurrentText("masks")
    masks.name = "masks v2"
    assert w.labels_combo.currentText() == "masks v2"
    # the shared fields keep each dock's defaults and the attribute names scripts use
    assert (w.model_combo.currentText(), w.device_combo.currentText()) == ("vit_b", "auto")
    assert [w.device_combo.itemText(i) for i in range(w.device_combo.count())] == [
        "auto", "cpu", "cuda"]
    w.weights_edit.setText(" ")
    w.bb_weights_edit.setText("random")
    assert w.model_key() == ("vit_b", "official", "auto")
    assert w.backbone_key() == ("dino_vits16", "random", "auto")


@pytest.mark.gui
def test_boxes_and_features_keep_their_defaults(make_napari_viewer):
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget
    from napari_dinoseg._widgets.features.panel import FeaturesWidget

    boxes = BoxesWidget(make_napari_viewer())
    assert boxes.backbone_key() == ("dino_vits16", "official", "cpu")
    assert [boxes.device_combo.itemText(i) for i in range(boxes.device_combo.count())] == [
        "cpu", "cuda", "mps"]
    features = FeaturesWidget(make_napari_viewer())
    assert features.backbone_key() == ("dinov2_vits14", "official", "auto")
