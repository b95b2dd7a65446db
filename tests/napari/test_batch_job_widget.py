"""The "Run as job" group in a real viewer: a real local batch run of the boxes task, followed
to its manifest; runners greyed with their reason; a bad request starts nothing.

Run under Xvfb: ``xvfb-run -a python -m pytest tests/napari/test_batch_job_widget.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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
    return d


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DINOSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker process, on a busy machine
    monkeypatch.delenv("DINOSEG_SYNC", raising=False)  # threads, as in napari
    return tmp_path / "runs"


def _messages() -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def _box(viewer, build, done=None, notices=None):
    from napari_dinoseg._widgets.common.batch_job import BatchJobBox

    box = BatchJobBox("boxes", build, done,
                      (lambda level, text: notices.append((level, text))) if notices is not None
                      else None)
    box.num_workers = 0
    box.poll_s = 0.2
    box.dock_section = box.section(expanded=False)
    viewer.window.add_dock_widget(box.dock_section, name="job")
    return box


def test_local_boxes_job_runs_to_its_manifest(make_napari_viewer, qtbot, folder, runs, tmp_path):
    viewer = make_napari_viewer(show=True)
    out = tmp_path / "out" / "boxes.json"
    options = {"method": "lost", "backbone": "test_dino_tiny16", "weights": "random",
               "size": 64, "format": "coco", "project": True}
    manifests: list[dict] = []
    box = _box(viewer, lambda: ("boxes", [folder], out, options, "cpu"), manifests.append)
    box.runner_combo.setCurrentText("local")
    box.start_btn.click()
    qtbot.waitUntil(lambda: box.started is not None or "not started" in box.label.text(),
                    timeout=20000)
    assert box.started is not None, box.label.text()
    assert not box.start_btn.isEnabled() and box.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: bool(manifests) or (box.finished is not None), timeout=45000)
    assert manifests, box.label.text()
    m = manifests[0]
    assert m["merged"] == 3 and m["failed"] == 0
    assert out.is_file() and str(out) in m["outputs"]
    assert len(json.loads(out.read_text())["images"]) == 3
    assert box.finished.state == "completed" and "merged 3 image(s)" in box.label.text()
    assert str(out) in box.outputs_label.text() and box.open_btn.isEnabled()
    assert box.bar.value() == box.bar.maximum()
    # project=True: every image's boxes are in the folder's project, as automatic boxes
    saved = json.loads((folder / ".dinoseg" / "images" / "im1.png" / "boxes.json").read_text())
    assert saved["status"] == "automatic"
    assert box.started.run_dir.parent == runs.resolve()
    qtbot.waitUntil(lambda: not box.running, timeout=5000)
    assert box.start_btn.isEnabled() and not box.cancel_btn.isEnabled()

    # the Train dock follows the same run: images, not loss curves
    from napari_dinoseg._widgets.train.panel import TrainWidget

    train = TrainWidget(viewer)
    qtbot.addWidget(train)
    train.follow(box.started.run_dir)
    assert train.controller.batch == (3, 1)
    assert "completed · merged 3 image(s) (0 failed)" in train.status_label.text()
    assert train.progress.maximum() == 3 and train.progress.value() == 3
    assert train.loss_plot.isHidden() and train.confusion.isHidden()
    qtbot.waitUntil(lambda: not train.timer.isActive(), timeout=3000)  # it ended: no more polls


def test_closing_the_dock_stops_following_not_the_run(make_napari_viewer, qtbot, folder, runs,
                                                      tmp_path):
    viewer = make_napari_viewer(show=True)
    out = tmp_path / "out2" / "boxes.json"
    options = {"method": "lost", "backbone": "test_dino_tiny16", "weights": "random",
               "size": 64}
    manifests: list[dict] = []
    box = _box(viewer, lambda: ("boxes", [folder], out, options, "cpu"), manifests.append)
    box.start()
    qtbot.waitUntil(lambda: box.started is not None, timeout=20000)
    viewer.window.remove_dock_widget(box.dock_section)  # napari's close button does this
    qtbot.waitUntil(lambda: not box.running, timeout=5000)  # the follower thread ended
    assert box.started.handle.wait(timeout=45) == "completed"  # the run went on
    assert out.is_file() and not manifests  # nobody was called back on a closed dock


def test_train_dock_shows_a_running_batch_run(tmp_path):
    """Images done of all, images/s summed over the shards still going, and the ETA."""
    from headless.batch.records import DONE_NAME, PROGRESS_NAME, shard_dir
    from headless.jobs.runlog import write_status
    from headless.jobs.runs import new_run_dir
    from headless.jobs.spec import build_spec
    from headless.store import atomic_write_json
    from napari_dinoseg._widgets.train.controller import TrainController

    images = [str(tmp_path / f"{i}.png") for i in range(10)]
    spec = build_spec({"job": "batch", "task": "boxes", "images": images,
                       "out": str(tmp_path / "b.json"), "shards": 2})
    run_dir = new_run_dir(spec, tmp_path / "runs")
    write_status(run_dir, state="running", runner="slurm", host="elsewhere")
    atomic_write_json(shard_dir(run_dir, 0) / PROGRESS_NAME,
                      {"done": 5, "total": 5, "images_per_s": 9.0})
    (shard_dir(run_dir, 0) / DONE_NAME).write_text("{}")
    atomic_write_json(shard_dir(run_dir, 1) / PROGRESS_NAME,
                      {"done": 1, "total": 5, "images_per_s": 0.5})
    ctl = TrainController()
    ctl.follow(run_dir)
    ctl.poll()
    assert ctl.batch == (10, 2) and ctl.progress() == (10, 6)
    assert ctl.status_text() == (f"{run_dir.name}: running · 6/10 images, 0.50 img/s, ETA 8 s, "
                                 "1/2 shard(s) done")


def test_runners_greyed_with_the_reason(make_napari_viewer, qtbot, folder, runs, monkeypatch):
    import headless.jobs.slurm_runner as slurm

    real_which = slurm.shutil.which
    monkeypatch.setattr(slurm.shutil, "which",
                        lambda name, *a, **k: None if name == "sbatch" else real_which(name))
    viewer = make_napari_viewer()
    box = _box(viewer, lambda: ("boxes", [folder], folder / "b.json", {}, "cpu"))
    box.runner_combo.setCurrentText("slurm")
    assert not box.runners  # nothing is checked before the group is unfolded
    box.dock_section.expand(animate=False)  # as a click on its title: the check starts
    qtbot.waitUntil(lambda: bool(box.runners), timeout=10000)
    model = box.runner_combo.model()
    slurm_row = box.runner_combo.findText("slurm")
    assert not model.item(slurm_row).isEnabled()
    tip = box.runner_combo.itemData(slurm_row, 3)  # Qt.ToolTipRole
    assert "sbatch" in tip and "\n" not in tip
    assert model.item(box.runner_combo.findText("local")).isEnabled()
    assert box.runner_combo.currentText() == "local"  # moved off the runner that cannot run


def test_build_error_shows_one_line_and_starts_nothing(make_napari_viewer, qtbot, runs):
    viewer = make_napari_viewer()
    notices: list[tuple[str, str]] = []

    def build():
        raise ValueError("Open a folder of images first.\n(a second line nobody reads)")

    box = _box(viewer, build, notices=notices)
    box.start()
    assert box.label.text() == "Open a folder of images first."
    assert notices == [("error", "Open a folder of images first.")]
    assert box.started is None and not box.running and box.start_btn.isEnabled()
    assert not runs.exists() or not any(runs.iterdir())


def test_a_folder_without_images_is_refused_in_the_worker(make_napari_viewer, qtbot, runs,
                                                          tmp_path):
    viewer = make_napari_viewer()
    empty = tmp_path / "empty"
    empty.mkdir()
    box = _box(viewer, lambda: ("boxes", [empty], empty / "b.json", {}, "cpu"))
    box.start()
    qtbot.waitUntil(lambda: "not started" in box.label.text(), timeout=10000)
    assert "no images in" in box.label.text() and box.started is None
    qtbot.waitUntil(lambda: box.start_btn.isEnabled(), timeout=5000)
    assert not runs.exists() or not any(runs.iterdir())


def test_docks_build_their_requests(make_napari_viewer, folder, tmp_path, monkeypatch):
    """SAM: automatic masks of the image's folder; segment: needs a probe; boxes: the folder."""
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    from napari_dinoseg._widgets.boxes.batch_job import attach_boxes_job
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget
    from napari_dinoseg._widgets.sam.panel import SamWidget
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    viewer = make_napari_viewer()
    viewer.open(str(folder / "im0.png"))
    sam = SamWidget(viewer)
    task, images, out, options, device = sam.batch_job.build()
    assert (task, images, out) == ("sam", [folder], folder / "dinoseg_sam")
    assert options["model"] == "vit_b"
    assert options["params"]["points_per_side"] == sam.points_spin.value()
    sam.batch_job.out_edit.setText(str(tmp_path / "masks"))
    assert sam.batch_job.build()[2] == tmp_path / "masks"

    seg = SegmentWidget(viewer)
    seg.batch_job.start()  # no probe yet: one line, nothing started
    assert seg.batch_job.label.text().startswith("No probe yet")
    assert seg.batch_job.started is None

    boxes = BoxesWidget(viewer)
    section = attach_boxes_job(boxes)
    assert section is not None and boxes.batch_job.task == "boxes"
    with pytest.raises(ValueError, match="Open a folder"):
        boxes.batch_job.build()
    boxes.set_folder(folder)
    task, images, out, options, _ = boxes.batch_job.build()
    assert task == "boxes" and len(images) == 3 and out == folder / "dinoseg_boxes" / "boxes.json"
    assert options["project"] is True and options["method"] == boxes.method_combo.currentData()


def _grey_folder(root: Path) -> tuple[Path, object]:
    """Two grey images and a classical linear probe trained on planted scribbles."""
    import tifffile

    from headless.progress import run
    from headless.segment.workflow import segment_image

    rng = np.random.default_rng(3)
    folder = root / "grey"
    folder.mkdir()
    for i, name in enumerate(("a.tif", "b.tif")):
        img = rng.integers(0, 90, (40, 44), dtype=np.uint8)
        img[10 + 4 * i:28, 8:30] = 200
        tifffile.imwrite(folder / name, img)
    img = tifffile.imread(folder / "a.tif")
    scr = np.zeros(img.shape, np.uint8)
    scr[:6], scr[14:22, 12:24] = 85, 170
    probe, _ = run(segment_image(img, scr, classifier="linear"))
    return folder, probe


def test_segment_dock_runs_its_probe_on_the_folder(make_napari_viewer, qtbot, runs, tmp_path):
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    folder, probe = _grey_folder(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(folder / "a.tif"))
    w = SegmentWidget(viewer)
    qtbot.addWidget(w)
    w.autosave_check.setChecked(False)
    w._adopt_probe(probe)
    box = w.batch_job
    box.num_workers, box.poll_s = 0, 0.2
    box.start()
    qtbot.waitUntil(lambda: box.finished is not None or "not started" in box.label.text(),
                    timeout=45000)
    assert box.finished is not None and box.finished.state == "completed", box.label.text()
    out = folder / "dinoseg_segment"
    assert (out / "probe.npz").is_file()  # the probe that made the labels, beside them
    assert (out / "a_labels.tif").is_file() and (out / "b_labels.tif").is_file()
    assert box.finished.manifest["merged"] == 2 and "merged 2 image(s)" in box.label.text()


def test_sam_dock_runs_automatic_masks_on_the_folder(make_napari_viewer, qtbot, runs, folder,
                                                     tmp_path):
    from headless import sam as S
    from napari_dinoseg._widgets.sam.panel import SamWidget

    ckpt = S.save_random_checkpoint(tmp_path / "tiny.pth")
    viewer = make_napari_viewer()
    viewer.open(str(folder / "im0.png"))
    w = SamWidget(viewer)
    qtbot.addWidget(w)
    w.model_combo.setCurrentText("test_sam_tiny")
    w.weights_edit.setText(str(ckpt))
    w.device_combo.setCurrentText("cpu")
    w.points_spin.setValue(4)
    w.iou_spin.setValue(0.0)
    w.stab_spin.setValue(0.0)
    box = w.batch_job
    box.num_workers, box.poll_s = 0, 0.2
    box.out_edit.setText(str(tmp_path / "masks"))
    box.start()
    qtbot.waitUntil(lambda: box.finished is not None or "not started" in box.label.text(),
                    timeout=45000)
    assert box.finished is not None and box.finished.state == "completed", box.label.text()
    assert box.finished.manifest["merged"] == 3
    assert sorted(p.name for p in (tmp_path / "masks").glob("*_sam_labels.tif")) == [
        "im0_sam_labels.tif", "im1_sam_labels.tif", "im2_sam_labels.tif"]
    assert "SAM job done: merged 3 image(s)" in _messages()[-1]


def test_boxes_dock_job_keeps_edited_boxes(make_napari_viewer, qtbot, runs, folder):
    from headless.boxes import Box
    from headless.boxes.curation import BoxCuration
    from napari_dinoseg._widgets.boxes.batch_job import attach_boxes_job
    from napari_dinoseg._widgets.boxes.panel import BoxesWidget

    mine = [Box(1, 2, 20, 30, source="user")]
    BoxCuration.for_folder(folder).save_edit("im1.png", mine, (40, 40))
    viewer = make_napari_viewer()
    w = BoxesWidget(viewer)
    qtbot.addWidget(w)
    if getattr(w, "batch_job", None) is None:  # until the boxes panel embeds it itself
        layout = w.scroll_area.widget().layout()
        layout.insertWidget(layout.indexOf(w.status), attach_boxes_job(w))
    w.backbone_combo.setCurrentText("test_dino_tiny16")
    w.weights_combo.setCurrentText("random")
    w.size_spin.setValue(64)
    w.set_folder(folder)
    box = w.batch_job
    box.num_workers, box.poll_s = 0, 0.2
    box.start()
    qtbot.waitUntil(lambda: box.finished is not None or "not started" in box.label.text(),
                    timeout=45000)
    assert box.finished is not None and box.finished.state == "completed", box.label.text()
    assert [w.status_of(f"im{i}.png") for i in range(3)] == ["automatic", "edited", "automatic"]
    assert BoxCuration.for_folder(folder).load("im1.png").boxes == mine  # the user's, kept
    assert (folder / "dinoseg_boxes" / "boxes.json").is_file()
    assert not any("after the job" in m for m in _messages())  # the dock refreshed cleanly
    assert "boxes job done: merged 3 image(s)" in _messages()[-1]
