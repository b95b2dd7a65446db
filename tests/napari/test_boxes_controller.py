"""The boxes dock's state without Qt or napari: folder, navigation, saves, statuses, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headless.boxes import Box, BoxSet, read_boxes
from headless.boxes.compute import BoxRun
from headless.progress import run
from napari_dinoseg._widgets.boxes.controller import (
    BoxesController,
    NothingToExport,
    compute_options,
    run_details,
)

PLANTED = [Box(10, 8, 30, 24, score=0.75, source="lost"),
           Box(2, 2, 8, 6, score=0.25, source="lost")]


@pytest.fixture
def folder(tmp_path) -> Path:
    import imageio.v3 as iio

    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(48, 64), (40, 40), (36, 52)]):
        iio.imwrite(d / f"im{i}.png", (rng.random((h, w, 3)) * 255).astype(np.uint8))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture
def ctl(folder) -> BoxesController:
    c = BoxesController()
    listing = c.open_folder(folder)
    assert [p.name for p in listing.skipped] == ["notes.txt"]
    return c


def _open(c: BoxesController, index: int) -> None:
    path, _, size = c.read(index)
    c.show(index, path, size)


def test_folder_listing_and_which_image_is_next(ctl, folder):
    assert ctl.names == ["im0.png", "im1.png", "im2.png"]
    assert ctl.index is None and ctl.current is None
    assert ctl.next_index() is None and not ctl.can_go_on() and not ctl.can_go_back()
    assert ctl.index_of("im2.png") == 2 and ctl.index_of(folder / "im1.png") == 1
    assert ctl.index_of(0) == 0
    with pytest.raises(ValueError, match="not an image of the open folder"):
        ctl.index_of("other.png")
    path, arr, size = ctl.read(0)
    assert path == folder / "im0.png" and arr.shape == (48, 64, 3) and size == (64, 48)
    _open(ctl, 0)
    assert ctl.current_name == "im0.png"
    assert (ctl.previous_index(), ctl.next_index()) == (None, 1)
    assert ctl.can_go_on() and not ctl.can_go_back()
    _open(ctl, 2)
    assert (ctl.previous_index(), ctl.next_index()) == (1, None)
    assert ctl.can_go_back() and not ctl.can_go_on()


def test_status_bookkeeping_edit_verify_and_refusal(ctl, folder):
    _open(ctl, 1)
    assert ctl.statuses() == dict.fromkeys(ctl.names, "none")
    assert ctl.load_saved() == ([], "none", None)
    assert ctl.refusal("im1.png", overwrite=False) is None
    state = ctl.save_edit([PLANTED[1]])
    assert state.status == "edited" and ctl.status_of("im1.png") == "edited"
    assert ctl.unchanged([PLANTED[1]]) and not ctl.unchanged(PLANTED)
    saved = json.loads((folder / ".dinoseg" / "images" / "im1.png" / "boxes.json").read_text())
    assert [Box.from_dict(b) for b in saved["boxes"]] == [PLANTED[1]]
    assert "edited" in ctl.refusal("im1.png", overwrite=False)
    assert ctl.refusal("im1.png", overwrite=True) is None
    state = ctl.mark_verified(PLANTED)
    assert state.status == "verified" and ctl.last_saved == PLANTED
    assert ctl.statuses() == {"im0.png": "none", "im1.png": "verified", "im2.png": "none"}
    assert ctl.load_saved() == (PLANTED, "verified", None)
    # a damaged file is reported (and kept aside at the next save), not raised
    (folder / ".dinoseg" / "images" / "im1.png" / "boxes.json").write_text("{oops")
    boxes, status, error = ctl.load_saved()
    assert boxes == [] and status == "none" and "cannot be read" in error


def _fake_run(name: str, boxes: list[Box], size=(64, 48)) -> BoxRun:
    bs = BoxSet()
    bs.add(name, boxes, size)
    return BoxRun(bs, "lost", "random (untrained)")


def test_a_computed_image_is_saved_unless_edited_meanwhile(ctl):
    _open(ctl, 0)
    cur = dict(ctl.current)
    opts = compute_options("lost", "k", 0)
    assert opts == {"method": "lost", "which": "k", "size": None}
    key = ("test_dino_tiny16", "random", "cpu")
    out = ctl.take_single(cur, _fake_run("im0.png", PLANTED), False, opts, key)
    assert out.saved and out.show and out.notices == []
    assert out.status == "im0.png: 2 box(es) from lost, random (untrained)"
    state = ctl.curation.load("im0.png")
    assert state.status == "automatic" and state.boxes == PLANTED
    assert state.details == run_details(opts, key, _fake_run("im0.png", []))
    # the user edits while another computation runs: their boxes are kept
    ctl.save_edit([PLANTED[0]])
    out = ctl.take_single(cur, _fake_run("im0.png", []), False, opts, key)
    assert not out.saved and not out.show
    assert [lvl for lvl, _ in out.notices] == ["info", "warning"]
    assert ctl.curation.load("im0.png").boxes == [PLANTED[0]]
    # an engine failure for the image is one error notice, nothing saved
    failed = _fake_run("im0.png", [])
    failed.failures["im0.png"] = "boom"
    out = ctl.take_single(cur, failed, True, opts, key)
    assert out.notices == [("error", "im0.png: boom")] and not out.saved
    # another image shown meanwhile: nothing saved, nothing shown
    _open(ctl, 1)
    out = ctl.take_single(cur, _fake_run("im0.png", PLANTED), True, opts, key)
    assert not out.saved and not out.show


def test_folder_job_saves_each_image_and_keeps_verified(ctl, monkeypatch):
    import headless.boxes.localize

    monkeypatch.setattr(headless.boxes.localize, "localize",
                        lambda method, features, index=0, which="k", orig_hw=None, **kw:
                        list(PLANTED))
    _open(ctl, 0)
    ctl.mark_verified([PLANTED[1]])
    skipped: list[str] = []
    opts = compute_options("lost", "k", 0)
    job = ctl.folder_job(opts, ("test_dino_tiny16", "random", "cpu"), False, skipped)
    result = run(job)
    assert skipped == ["im0.png"]
    assert ctl.statuses() == {"im0.png": "verified", "im1.png": "automatic",
                              "im2.png": "automatic"}
    assert ctl.curation.load("im0.png").boxes == [PLANTED[1]]
    assert ctl.curation.load("im2.png").boxes == PLANTED
    assert ctl.folder_summary(result, skipped, opts) == (
        "lost: 6 box(es) on 3 image(s); 1 edited/verified image(s) kept their boxes")
    assert not ctl.shows_new_boxes(result, skipped)  # im0 kept its verified boxes
    _open(ctl, 1)
    assert ctl.shows_new_boxes(result, skipped)


def test_export_and_an_image_without_file(ctl, tmp_path):
    with pytest.raises(NothingToExport, match="no saved boxes"):
        ctl.export("coco", tmp_path / "out.json", [])
    _open(ctl, 0)
    ctl.save_edit(PLANTED)
    written, boxset, target = ctl.export("coco", tmp_path / "out.json", [])
    assert written == [target] and boxset.images == ["im0.png"]
    assert read_boxes(target).boxes == {"im0.png": PLANTED}

    c = BoxesController()
    with pytest.raises(NothingToExport, match="open a folder or an image"):
        c.export_boxset([])
    c.adopt("array", None, np.zeros((40, 50), np.uint16))
    assert c.current_name == "array" and c.current["size"] == (50, 40) and c.curation is None
    assert c.status_of("array") == "none" and c.statuses() == {}
    assert c.save_edit(PLANTED) is None and c.unchanged(PLANTED)  # kept in the layer only
    assert c.export_boxset([PLANTED[0]]).boxes == {"array": [PLANTED[0]]}


# -- the QC queue ---------------------------------------------------------------------------
def _plant_qc(ctl: BoxesController, u: dict[str, float | None]) -> None:
    """Automatic boxes with a QC record in boxes.json details["qc"], as the compute path saves."""
    for name, value in u.items():
        details = {} if value is None else {"qc": {"uncertainty": value, "signals": {},
                                                   "reasons": [f"planted {value}"]}}
        boxes = [] if value == 1.0 else [PLANTED[0]]
        ctl.curation.save_automatic(name, boxes, (64, 48), "lost", details)


def _read_queue(ctl: BoxesController) -> None:
    ctl.queue.set_rows(run(ctl.queue_job()))


def test_queue_order_filter_and_stepping(ctl):
    _plant_qc(ctl, {"im0.png": 0.2, "im1.png": 1.0, "im2.png": 0.6})
    # before the project is read: folder order, nothing known
    assert [r.image for r in ctl.queue.visible()] == ctl.names
    _read_queue(ctl)
    q = ctl.queue
    assert [(r.image, r.uncertainty) for r in q.visible()] == [
        ("im1.png", 1.0), ("im2.png", 0.6), ("im0.png", 0.2)]
    assert q.row("im1.png").reasons == ("planted 1.0",)
    _open(ctl, 2)  # im2, in the middle of the queue
    assert (ctl.previous_index(), ctl.next_index()) == (1, 0)
    assert ctl.next_to_check_index() == 0
    _open(ctl, 0)  # the last: next to check wraps around to the worst
    assert ctl.next_index() is None and ctl.next_to_check_index() == 1
    # verifying moves it out of the queue: next to check skips it
    _open(ctl, 1)
    ctl.mark_verified([PLANTED[0]])
    assert q.row("im1.png").status == "verified" and q.row("im1.png").uncertainty == 1.0
    assert ctl.next_to_check_index() == 2
    q.show = "to check"
    assert [r.image for r in q.visible()] == ["im2.png", "im0.png"]
    assert ctl.next_index() == 2  # from a hidden image: the next shown one
    q.show = "verified"
    assert [r.image for r in q.visible()] == ["im1.png"] and ctl.next_to_check_index() is None
    q.show, q.sort = "all", "name"
    assert [r.image for r in q.visible()] == ctl.names
    assert q.to_check() == 2
    # read again from disk: the same
    _read_queue(ctl)
    assert q.row("im1.png").status == "verified" and q.to_check() == 2


def test_a_read_started_before_an_edit_does_not_undo_it(ctl):
    _plant_qc(ctl, {"im0.png": 0.5})
    stale = run(ctl.queue_job())  # read, then the user edits before it is shown
    _open(ctl, 0)
    ctl.save_edit([PLANTED[1]])
    ctl.queue.set_rows(stale)
    assert ctl.queue.row("im0.png").status == "edited"
    assert ctl.queue.row("im0.png").uncertainty == 0.5
    _read_queue(ctl)  # a read after the edit takes the disk's truth
    assert ctl.queue.row("im0.png").status == "edited"


def _qc_compute(monkeypatch, qc_of):
    """compute_boxes whose per-image progress carries a ``qc`` record (the engine's new field)."""
    from dataclasses import dataclass, fields

    import headless.boxes.compute as box_compute

    @dataclass(frozen=True)
    class WithQC(box_compute.ImageBoxesProgress):
        qc: dict | None = None

    real = box_compute.compute_boxes

    def compute(*args, **kwargs):
        gen = real(*args, **kwargs)
        try:
            while True:
                item = next(gen)
                if isinstance(item, box_compute.ImageBoxesProgress) and item.image:
                    kept = {f.name: getattr(item, f.name) for f in fields(item) if f.name != "qc"}
                    item = WithQC(**kept, qc=qc_of(item))
                yield item
        except StopIteration as stop:
            return stop.value

    monkeypatch.setattr(box_compute, "compute_boxes", compute)


def test_computed_boxes_save_their_qc_record(ctl, monkeypatch):
    import headless.boxes.localize
    from headless.qc.uncertainty import box_uncertainty

    monkeypatch.setattr(headless.boxes.localize, "localize",
                        lambda method, features, index=0, which="k", orig_hw=None, **kw:
                        list(PLANTED))
    _qc_compute(monkeypatch, lambda item: box_uncertainty(item.boxes, item.size))
    key, opts = ("test_dino_tiny16", "random", "cpu"), compute_options("lost", "k", 0)
    skipped, saved = [], {}
    run(ctl.folder_job(opts, key, False, skipped, saved))
    expected = box_uncertainty(PLANTED, (64, 48))
    assert expected["uncertainty"] == pytest.approx(0.25)  # best score 0.75, no other signal
    assert ctl.curation.load("im0.png").details["qc"] == expected
    assert sorted(saved) == ctl.names and saved["im0.png"] == expected
    ctl.note_saved(saved)
    assert ctl.queue.row("im0.png").uncertainty == pytest.approx(0.25)
    _read_queue(ctl)  # and the queue reads it back from boxes.json
    assert [r.status for r in ctl.queue.visible()] == ["automatic"] * 3
    assert ctl.queue.row("im1.png").uncertainty == pytest.approx(0.25)

    # one image: the record travels from the worker's items to the save
    _qc_compute(monkeypatch, lambda item: {"uncertainty": 0.9, "signals": {}, "reasons": ["x"]})
    _open(ctl, 1)
    cur = dict(ctl.current)
    result = run(ctl.single_job(cur, opts, key))
    out = ctl.take_single(cur, result, True, opts, key)
    assert out.saved and ctl.curation.load("im1.png").details["qc"]["uncertainty"] == 0.9
    assert ctl.queue.row("im1.png").uncertainty == 0.9 and ctl.queue.row("im1.png").reasons == (
        "x",)
