"""The QC records in the project folder and the queue built from them, on planted images."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from headless.boxes.curation import BoxCuration
from headless.boxes.types import Box
from headless.qc.queue import QueueRow, build_queue, sort_rows, write_queue_csv
from headless.qc.store import load_qc, mark_qc_verified, save_qc
from headless.qc.uncertainty import box_uncertainty
from headless.store import ProjectStore

SIZE = (64, 48)
BOX = Box(10, 8, 40, 32, score=0.8, source="lost")


def _png(path: Path, size=SIZE) -> Path:
    import imageio.v3 as iio

    iio.imwrite(path, np.zeros((size[1], size[0], 3), np.uint8))
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for name in ("a_confident.png", "b_empty.png", "c_disagree.png", "d_unseen.png"):
        _png(d / name)
    (d / "notes.txt").write_text("not an image")
    return d


def _attention(inside: float) -> np.ndarray:
    """A map with share ``inside`` of its mass in BOX, the rest spread outside it."""
    att = np.zeros((SIZE[1], SIZE[0]))
    box = np.zeros_like(att, bool)
    box[8:32, 10:40] = True
    att[box] = inside / box.sum()
    att[~box] = (1 - inside) / (~box).sum()
    return att


def _plant(folder: Path) -> dict[str, dict]:
    """Automatic boxes + QC for the planted cases, as the compute path saves them."""
    cur = BoxCuration.for_folder(folder)
    records = {
        "a_confident.png": box_uncertainty(
            [BOX], SIZE, attention=_attention(0.9),
            other_boxes={"tokencut": [Box(11, 8, 40, 33)], "most": [Box(10, 9, 39, 32)]}),
        "b_empty.png": box_uncertainty([], SIZE, other_boxes={"tokencut": [BOX]}),
        "c_disagree.png": box_uncertainty(
            [BOX], SIZE, attention=_attention(0.6),
            other_boxes={"tokencut": [Box(44, 30, 64, 48)], "most": [Box(0, 0, 12, 10)]}),
    }
    for name, rec in records.items():
        boxes = [] if name == "b_empty.png" else [BOX]
        cur.save_automatic(name, boxes, SIZE, "lost", details={"qc": rec})
    return records


def test_planted_order_confident_then_disagree_then_empty(folder):
    records = _plant(folder)
    rows = build_queue(folder, tasks=["boxes"])
    assert [r.image for r in rows] == ["b_empty.png", "c_disagree.png", "a_confident.png",
                                       "d_unseen.png"]
    u = {r.image: r.uncertainty for r in rows}
    assert u["b_empty.png"] == 1.0
    assert u["a_confident.png"] < 0.2 < u["c_disagree.png"] < 1.0
    assert u["d_unseen.png"] is None  # no record: listed last
    by_name = {r.image: r for r in rows}
    assert by_name["b_empty.png"].reasons == ("no object found",)
    assert any(r.startswith("methods disagree") for r in by_name["c_disagree.png"].reasons)
    assert by_name["a_confident.png"].reasons == ()
    assert [r.status for r in rows] == ["automatic"] * 3 + ["none"]
    assert by_name["c_disagree.png"].signals == records["c_disagree.png"]["signals"]
    # by name
    assert [r.image for r in build_queue(folder, tasks=["boxes"], sort="name")] == [
        "a_confident.png", "b_empty.png", "c_disagree.png", "d_unseen.png"]


def test_verification_moves_an_image_out_of_the_queue(folder):
    _plant(folder)
    cur = BoxCuration.for_folder(folder)
    cur.mark_verified("b_empty.png")  # as the dock's "Mark verified"
    names = [r.image for r in build_queue(folder, tasks=["boxes"])]
    assert names == ["c_disagree.png", "a_confident.png", "d_unseen.png"]
    rows = build_queue(folder, tasks=["boxes"], include_verified=True)
    assert [(r.image, r.status) for r in rows][0] == ("b_empty.png", "verified")
    assert rows[0].uncertainty == 1.0  # the record survives the verification
    # an edit keeps the image in the queue with its new status
    cur.save_edit("c_disagree.png", [Box(12, 8, 40, 32)])
    assert [(r.image, r.status) for r in build_queue(folder, tasks=["boxes"])][0] == (
        "c_disagree.png", "edited")
    # status filters
    assert [r.image for r in build_queue(folder, tasks=["boxes"], statuses=["verified"])] == [
        "b_empty.png"]
    assert [r.image for r in build_queue(folder, tasks=["boxes"], statuses=["none"])] == [
        "d_unseen.png"]
    # through the store's API: the same curation status
    mark_qc_verified(folder / "c_disagree.png", "boxes")
    assert cur.status("c_disagree.png") == "verified"
    assert [r.image for r in build_queue(folder, tasks=["boxes"])] == [
        "a_confident.png", "d_unseen.png"]


def test_qc_json_first_then_boxes_json_and_the_newer_wins(folder):
    _plant(folder)
    store = ProjectStore(folder / ".dinoseg")
    # a qc.json record saved after the automatic boxes overrides details["qc"]
    save_qc(folder / "a_confident.png", "boxes", {"uncertainty": 0.95, "signals": {},
                                                  "reasons": ["planted"]}, store=store)
    row = next(r for r in build_queue(folder, tasks=["boxes"]) if r.image == "a_confident.png")
    assert (row.uncertainty, row.reasons) == (0.95, ("planted",))
    # a record only in qc.json (no boxes.json): status none, number from qc.json
    save_qc(folder / "d_unseen.png", "boxes", {"uncertainty": 0.5}, store=store)
    row = next(r for r in build_queue(folder, tasks=["boxes"]) if r.image == "d_unseen.png")
    assert (row.uncertainty, row.status) == (0.5, "none")
    # boxes recomputed later: the newer record in boxes.json wins over the older qc.json one
    qc_path = store.path("a_confident.png", "qc.json")
    d = json.loads(qc_path.read_text())
    d["tasks"]["boxes"]["updated"] = "2000-01-01T00:00:00+00:00"
    qc_path.write_text(json.dumps(d))
    row = next(r for r in build_queue(folder, tasks=["boxes"]) if r.image == "a_confident.png")
    assert row.uncertainty < 0.2


def test_sam_and_segment_records_merge_and_verify(folder):
    img = folder / "c_disagree.png"
    save_qc(img, "sam", {"uncertainty": 0.4, "signals": {"n_masks": 2}, "reasons": []})
    save_qc(img, "segment", {"uncertainty": 0.7, "signals": {}, "reasons": ["x"]})
    save_qc(img, "sam", {"uncertainty": 0.3, "signals": {}, "reasons": []})  # replaces sam only
    qc = load_qc(img)
    assert set(qc["tasks"]) == {"sam", "segment"} and qc["tasks"]["sam"]["uncertainty"] == 0.3
    assert qc["verified"] == {}
    rows = build_queue(folder, tasks=["sam", "segment"])
    assert [(r.image, r.task, r.uncertainty) for r in rows] == [
        ("c_disagree.png", "segment", 0.7), ("c_disagree.png", "sam", 0.3)]
    mark_qc_verified(img, "sam")
    assert "sam" in load_qc(img)["verified"]
    assert [r.task for r in build_queue(folder, tasks=["sam", "segment"])] == ["segment"]
    rows = build_queue(folder, tasks=["sam"], include_verified=True)
    assert [(r.task, r.status) for r in rows] == [("sam", "verified")]
    # all tasks: every image has a boxes row, sam/segment only where recorded
    rows = build_queue(folder, include_verified=True)
    assert sorted((r.image, r.task) for r in rows if r.task != "boxes") == [
        ("c_disagree.png", "sam"), ("c_disagree.png", "segment")]
    assert len([r for r in rows if r.task == "boxes"]) == 4
    # saving a new record keeps the verification
    save_qc(img, "sam", {"uncertainty": 0.9})
    assert "sam" in load_qc(img)["verified"]


def test_damaged_qc_json_never_crashes_and_is_kept_aside(folder, caplog):
    img = folder / "a_confident.png"
    save_qc(img, "sam", {"uncertainty": 0.4})
    path = folder / ".dinoseg" / "images" / "a_confident.png" / "qc.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="headless.qc.store"):
        assert load_qc(img) == {"version": 1, "tasks": {}, "verified": {}}
    assert "damaged" in caplog.text
    assert [r.image for r in build_queue(folder, tasks=["sam"])] == []
    rows = build_queue(folder, tasks=["boxes"])  # the boxes rows are still there
    assert len(rows) == 4
    path.write_text(json.dumps({"tasks": ["not", "a", "dict"]}))
    assert load_qc(img)["tasks"] == {}
    save_qc(img, "segment", {"uncertainty": 0.2})
    assert set(load_qc(img)["tasks"]) == {"segment"}
    kept = list(path.parent.glob("qc.json.damaged-*"))
    assert len(kept) == 1 and "not" in kept[0].read_text()


def test_bad_input_is_refused(folder):
    with pytest.raises(ValueError, match="unknown QC task"):
        save_qc(folder / "a_confident.png", "masks", {"uncertainty": 0.1})
    with pytest.raises(ValueError, match="numeric 'uncertainty'"):
        save_qc(folder / "a_confident.png", "sam", {"signals": {}})
    with pytest.raises(ValueError, match="project store"):
        load_qc("a_confident.png")
    with pytest.raises(ValueError, match="no saved boxes"):
        mark_qc_verified(folder / "d_unseen.png", "boxes")
    with pytest.raises(ValueError, match="not a folder"):
        build_queue(folder / "missing")
    with pytest.raises(ValueError, match="unknown sort"):
        build_queue(folder, sort="random")
    with pytest.raises(ValueError, match="unknown status"):
        build_queue(folder, statuses=["done"])


def test_ties_sort_by_name_and_csv_is_written(folder, tmp_path):
    rows = [QueueRow("b.png", "boxes", 0.5, "automatic", ("r1", "r2"), {"score": 0.5}),
            QueueRow("a.png", "boxes", 0.5, "automatic"),
            QueueRow("c.png", "boxes", None, "none"),
            QueueRow("a.png", "sam", 0.9, "automatic")]
    assert [(r.image, r.task) for r in sort_rows(rows)] == [
        ("a.png", "sam"), ("a.png", "boxes"), ("b.png", "boxes"), ("c.png", "boxes")]
    out = write_queue_csv(sort_rows(rows), tmp_path / "q.csv")
    with open(out, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["image", "task", "uncertainty", "status", "reasons", "signals"]
    assert got[2] == {"image": "b.png", "task": "boxes", "uncertainty": "0.5000",
                      "status": "automatic", "reasons": "r1; r2", "signals": '{"score": 0.5}'}
    assert got[3]["uncertainty"] == "" and json.loads(got[3]["signals"]) == {}
