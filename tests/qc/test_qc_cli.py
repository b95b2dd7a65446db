"""``dinoseg qc``: the queue as a table and a CSV, verification, one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from headless.boxes.curation import BoxCuration
from headless.boxes.types import Box
from headless.cli import main
from headless.qc.store import save_qc

SIZE = (32, 24)


@pytest.fixture
def folder(tmp_path) -> Path:
    import imageio.v3 as iio

    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        iio.imwrite(d / name, np.zeros((SIZE[1], SIZE[0]), np.uint8))
    cur = BoxCuration.for_folder(d)
    box = Box(2, 2, 20, 20, score=0.9, source="lost")
    cur.save_automatic("a.png", [box], SIZE, "lost",
                       details={"qc": {"uncertainty": 0.1, "signals": {"score": 0.9},
                                       "reasons": []}})
    cur.save_automatic("b.png", [], SIZE, "lost",
                       details={"qc": {"uncertainty": 1.0, "signals": {"n_boxes": 0},
                                       "reasons": ["no object found"]}})
    save_qc(d / "c.png", "sam", {"uncertainty": 0.6, "signals": {}, "reasons": ["low IoU"]})
    return d


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_qc_prints_the_queue_and_writes_the_csv(folder, tmp_path, capsys):
    out = tmp_path / "queue.csv"
    rc = main(["qc", str(folder), "--sort", "uncertainty", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = _csv(out)
    assert [(r["image"], r["task"], r["uncertainty"], r["status"]) for r in rows] == [
        ("b.png", "boxes", "1.0000", "automatic"),
        ("c.png", "sam", "0.6000", "automatic"),
        ("a.png", "boxes", "0.1000", "automatic"),
        ("c.png", "boxes", "", "none"),
    ]
    assert rows[0]["reasons"] == "no object found"
    lines = captured.out.splitlines()
    assert lines[0].split() == ["image", "task", "uncert.", "status", "reasons"]
    assert lines[1].split()[:4] == ["b.png", "boxes", "1.00", "automatic"]
    assert "4 row(s) -> " + str(out) in captured.out


def test_qc_filters_and_verify(folder, tmp_path, capsys):
    out = tmp_path / "q.csv"
    assert main(["qc", str(folder), "--task", "boxes", "--sort", "name", "--out", str(out)]) == 0
    assert [r["image"] for r in _csv(out)] == ["a.png", "b.png", "c.png"]
    assert main(["qc", str(folder), "--verify", "b.png", "--task", "boxes",
                 "--out", str(out)]) == 0
    assert "b.png: boxes verified" in capsys.readouterr().out
    assert BoxCuration.for_folder(folder).status("b.png") == "verified"
    assert [r["image"] for r in _csv(out)] == ["a.png", "c.png"]
    # --task is both what is verified and what is listed: the sam queue is now empty
    assert main(["qc", str(folder), "--verify", "c.png", "--task", "sam", "--out", str(out)]) == 0
    assert _csv(out) == []
    assert main(["qc", str(folder), "--out", str(out)]) == 0
    assert [(r["image"], r["task"]) for r in _csv(out)] == [("a.png", "boxes"), ("c.png", "boxes")]
    assert main(["qc", str(folder), "--all", "--status", "verified", "--out", str(out)]) == 0
    assert sorted((r["image"], r["task"]) for r in _csv(out)) == [("b.png", "boxes"),
                                                                 ("c.png", "sam")]
    capsys.readouterr()
    assert main(["qc", str(folder), "--status", "edited"]) == 0
    assert "nothing to check" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["MISSING"], "not a folder"),
    (["FOLDER", "--verify", "a.png"], "--verify needs exactly one --task"),
    (["FOLDER", "--verify", "zzz.png", "--task", "sam"], "zzz.png: not an image of"),
    (["FOLDER", "--verify", "c.png", "--task", "boxes"], "cannot verify c.png (boxes)"),
])
def test_qc_errors_are_one_line_exit_2(folder, tmp_path, capsys, args, message):
    subst = {"MISSING": str(tmp_path / "missing"), "FOLDER": str(folder)}
    rc = main(["qc", *[subst.get(a, a) for a in args]])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("dinoseg qc: error: ") and message in err


def test_boxes_project_then_qc_end_to_end(tmp_path):
    """``dinoseg boxes --project`` saves each image's QC record; ``dinoseg qc`` queues them
    worst first; a verification takes an image out. The batch job's project mode does too."""
    import torch
    from PIL import Image

    from headless.features.backbones import load_backbone

    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(4):
        img = rng.integers(0, 50, (64, 64, 3), dtype=np.uint8)
        img[8 + 6 * i:30 + 6 * i, 10:40] = 240
        Image.fromarray(img).save(d / f"p{i}.png")
    torch.manual_seed(0)
    w = tmp_path / "tiny.pth"
    torch.save(load_backbone("test_dino_tiny16", "random").model.state_dict(), w)
    common = ["--method", "lost", "--backbone", "test_dino_tiny16", "--weights", str(w),
              "--size", "64", "--quiet", "--project"]
    assert main(["boxes", str(d), "--out", str(tmp_path / "b.json"), *common]) == 0
    assert main(["qc", str(d), "--task", "boxes", "--out", str(tmp_path / "q.csv")]) == 0
    rows = _csv(tmp_path / "q.csv")
    assert sorted(r["image"] for r in rows) == [f"p{i}.png" for i in range(4)]
    values = [float(r["uncertainty"]) for r in rows]
    assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values, reverse=True)
    worst = rows[0]["image"]
    assert main(["qc", str(d), "--verify", worst, "--task", "boxes",
                 "--out", str(tmp_path / "q2.csv")]) == 0
    assert worst not in [r["image"] for r in _csv(tmp_path / "q2.csv")]
    # the batch job with project=True writes the same records (same features, same methods)
    before = {r["image"]: r["uncertainty"] for r in rows}
    assert main(["boxes", str(d), "--out", str(tmp_path / "j.json"), *common, "--runner",
                 "local", "--runs-root", str(tmp_path / "runs"), "--num-workers", "0"]) == 0
    assert main(["qc", str(d), "--task", "boxes", "--all", "--out",
                 str(tmp_path / "q3.csv")]) == 0
    after = {r["image"]: r["uncertainty"] for r in _csv(tmp_path / "q3.csv")}
    assert {k: v for k, v in after.items() if k != worst} == \
        {k: v for k, v in before.items() if k != worst}
