"""``dinoseg boxes``, ``dinoseg boxes-export`` and ``dinoseg eval-boxes``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headless.boxes import Box, BoxSet, read_boxes, write_coco, write_csv, write_voc
from headless.cli import main


def _images(folder: Path) -> Path:
    """Three small images of different sizes and modes, a text file and a corrupt 'image'."""
    import imageio.v3 as iio
    import tifffile

    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 56, 3)) * 60).astype(np.uint8)
    rgb[10:30, 16:40] = 220
    iio.imwrite(folder / "a.png", rgb)
    grey = (rng.random((50, 33)) * 4000).astype(np.uint16)
    grey[5:25, 5:20] = 60000
    tifffile.imwrite(folder / "b.tif", grey)
    iio.imwrite(folder / "c.jpg", rgb[:, ::-1].copy())
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    return _images(tmp_path_factory.mktemp("cli") / "imgs")


TINY = ["--backbone", "test_dino_tiny16", "--weights", "random", "--quiet"]


def test_boxes_writes_valid_coco_listing_every_image(image_dir, tmp_path, capsys):
    from pycocotools.coco import COCO

    out = tmp_path / "boxes.json"
    rc = main(["boxes", str(image_dir), "--method", "lost", *TINY, "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    coco = COCO(str(out))
    assert sorted(im["file_name"] for im in coco.imgs.values()) == ["a.png", "b.tif", "c.jpg"]
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in coco.imgs.values()}
    assert sizes == {"a.png": (56, 40), "b.tif": (33, 50), "c.jpg": (56, 40)}
    boxes = read_boxes(out)
    for name, bs in boxes.boxes.items():
        w, h = boxes.sizes[name]
        for b in bs:  # every box lies in its original image and says who made it
            assert 0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h
            assert b.source == "lost" and b.score is not None
    assert "notes.txt" in captured.err and "skipped" in captured.err
    assert "-> " + str(out) in captured.out


def test_boxes_other_formats_image_list_and_project(image_dir, tmp_path, capsys):
    from headless.boxes.curation import BoxCuration

    listing = tmp_path / "list.txt"
    listing.write_text("a\n# comment\nc.jpg\nmissing\n")
    out = tmp_path / "boxes.csv"
    rc = main(["boxes", str(image_dir), "--method", "dino", *TINY, "--size", "64",
               "--image-list", str(listing), "--project", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    bs = read_boxes(out)
    assert bs.images == ["a.png", "c.jpg"]
    assert "missing" in err  # listed but absent images are reported
    cur = BoxCuration.for_folder(image_dir)
    assert cur.status("a.png") == "automatic" and cur.status("b.tif") == "none"
    assert cur.load("a.png").boxes == bs.boxes["a.png"]
    assert cur.load("a.png").size == (56, 40)  # original size although --size 64 resized it

    # a user's edit survives a second --project run
    cur.save_edit("a.png", [Box(1, 2, 3, 4)])
    assert main(["boxes", str(image_dir / "a.png"), "--method", "lost", *TINY, "--project",
                 "--out", str(tmp_path / "voc_out")]) == 0
    assert cur.load("a.png").boxes == [Box(1, 2, 3, 4)]
    assert (tmp_path / "voc_out" / "a.xml").exists()

    # boxes-export writes the curated state
    assert main(["boxes-export", str(image_dir), "--out", str(tmp_path / "cur.json")]) == 0
    exported = read_boxes(tmp_path / "cur.json")
    assert exported.boxes["a.png"] == [Box(1, 2, 3, 4)]
    assert main(["boxes-export", str(image_dir), "--status", "edited",
                 "--out", str(tmp_path / "ed.csv")]) == 0
    assert read_boxes(tmp_path / "ed.csv").images == ["a.png"]


def test_boxes_reports_unreadable_images_and_bad_arguments(image_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG not really")
    import imageio.v3 as iio

    iio.imwrite(bad / "ok.png", np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / "b.json"
    rc = main(["boxes", str(bad), "--method", "tokencut", *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0
    assert "failed: broken.png" in err
    assert read_boxes(out).images == ["ok.png"]

    assert main(["boxes", str(tmp_path / "nowhere"), "--method", "lost", *TINY,
                 "--out", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["boxes", str(bad), "--method", "lost", *TINY, "--param", "oops",
                 "--out", str(out)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def _eval_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    gt = BoxSet()
    gt.add("img1.jpg", [Box(0, 0, 10, 10)], (40, 40))
    gt.add("img2.jpg", [Box(0, 0, 10, 10), Box(20, 20, 30, 30)], (40, 40))
    gt.add("img3.jpg", [Box(0, 0, 10, 10)], (40, 40))
    gt.add("img4.jpg", [Box(0, 0, 4, 4)], (40, 40))
    pred = BoxSet()
    pred.add("img1.jpg", [Box(0, 0, 10, 20, score=0.9, source="lost")], (40, 40))
    pred.add("img2.jpg", [Box(5, 5, 15, 15), Box(20, 20, 30, 31)], (40, 40))
    pred.add("img3.jpg", [], (40, 40))
    pred.add("img4.jpg", [Box(2, 2, 6, 6)], (40, 40))
    write_voc(tmp_path / "gt_voc", gt)
    write_csv(tmp_path / "gt.csv", gt)
    return write_coco(tmp_path / "pred.json", pred), tmp_path / "gt_voc", tmp_path / "gt.csv"


def test_eval_boxes_known_corloc(tmp_path, capsys):
    pred, gt_voc, gt_csv = _eval_files(tmp_path)
    report = tmp_path / "m.json"
    assert main(["eval-boxes", str(pred), str(gt_voc), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "CorLoc    50.00 %  (2/4 images" in out
    assert "maIoU     56.25 %" in out
    m = json.loads(report.read_text())
    assert m["corloc"] == 0.5 and m["n_hits"] == 2 and m["n_images"] == 4
    assert m["mean_iou"] == pytest.approx((0.5 + 10 / 11 + 0 + 1 / 7) / 4, abs=1e-12)
    assert m["maiou"] == 0.5625
    assert m["n_gt_boxes"] == 5 and m["n_pred_boxes"] == 4
    assert m["images_without_prediction"] == ["img3.jpg"]
    assert len(m["per_image"]) == 4

    assert main(["eval-boxes", str(pred), str(gt_csv), "--threshold", "0.6"]) == 0
    assert "CorLoc    25.00 %  (1/4 images" in capsys.readouterr().out
    listing = tmp_path / "trainval.txt"
    listing.write_text("img1\nimg3\n")
    assert main(["eval-boxes", str(pred), str(gt_voc), "--image-list", str(listing)]) == 0
    assert "CorLoc    50.00 %  (1/2 images" in capsys.readouterr().out


def test_eval_boxes_bad_input(tmp_path, capsys):
    pred, gt_voc, _ = _eval_files(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": [{"id": 1, "file_name": "a"}], "annotations": []}))
    assert main(["eval-boxes", str(broken), str(gt_voc)]) == 2
    err = capsys.readouterr().err
    assert "broken.json" in err and "'width'" in err
    assert main(["eval-boxes", str(pred), str(gt_voc), "--threshold", "0"]) == 2


def test_boxes_reports_images_without_box_and_clips(image_dir, tmp_path, capsys, monkeypatch):
    import headless.boxes.localize

    calls = []

    def fake_localize(method, features, index=0, which="k", orig_hw=None, **params):
        calls.append((method, which, tuple(orig_hw), params))
        if tuple(orig_hw) == (50, 33):  # b.tif: "no foreground"
            return []
        return [Box(-5, 3, 1000, 12, score=0.5, source=method)]

    monkeypatch.setattr(headless.boxes.localize, "localize", fake_localize)
    out = tmp_path / "x.csv"
    rc = main(["boxes", str(image_dir), "--method", "most", "--which", "v", *TINY,
               "--param", "dbscan_eps=3", "--param", "filter_boxes=false", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0
    assert "no foreground found (no box) in 1 image(s): b.tif" in err
    assert calls[0][:2] == ("most", "v") and calls[0][3] == {"dbscan_eps": 3,
                                                             "filter_boxes": False}
    bs = read_boxes(out)
    assert bs.boxes["b.tif"] == [] and "b.tif" in bs.images
    assert bs.boxes["a.png"] == [Box(0, 3, 56, 12, score=0.5, source="most")]  # clipped


@pytest.mark.parametrize(("param", "message"), [
    ("k=-1", "lost parameter k=-1: must be a whole number >= 1"),
    ("kk=5", "lost has no parameter 'kk' (did you mean 'k'?)"),
    ("k=NaN", "lost parameter k=nan: must be finite"),
    ("k=[1, 2]", "lost parameter k"),
])
def test_bad_params_are_refused_before_any_work(tmp_path, capsys, param, message):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    code = main(["boxes", str(tmp_path / "a.png"), "--method", "lost", "--backbone",
                 "test_dino_tiny16", "--weights", "random", "--out", str(tmp_path / "o.json"),
                 "--param", param])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_eval_boxes_warns_when_the_files_disagree_about_sizes(tmp_path, capsys):
    pred, gt = BoxSet(), BoxSet()
    pred.add("a.jpg", [Box(0, 0, 10, 10)], (320, 240))
    gt.add("a.jpg", [Box(0, 0, 20, 20)], (640, 480))
    write_coco(tmp_path / "p.json", pred)
    write_coco(tmp_path / "g.json", gt)
    assert main(["eval-boxes", str(tmp_path / "p.json"), str(tmp_path / "g.json")]) == 0
    err = capsys.readouterr().err
    assert "1 image(s) have another size" in err and "a.jpg: 320x240 vs 640x480" in err
    (tmp_path / "folder").mkdir()
    assert main(["eval-boxes", str(tmp_path / "p.json"), str(tmp_path / "g.json"),
                 "--json", str(tmp_path / "folder")]) == 2
    assert "is a folder" in capsys.readouterr().err
