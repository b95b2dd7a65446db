"""``dinoseg train`` (job fgvc), ``dinoseg evaluate`` and ``dinoseg predict`` on a tiny run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from headless.cli import main
from headless.jobs.runners import resolve_spec_paths
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec
from headless.train.fgvc import job
from headless.train.fgvc.synthetic import make_planted_fgvc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("fgvc_cli")
    data = make_planted_fgvc(base / "data", n_classes=3, n_train=6, n_test=3, size=64)
    spec = resolve_spec_paths(build_spec({
        "job": "fgvc", "device": "cpu", "num_epochs": 2,
        "data": {"root": str(data), "image_size": 64, "batch_size": 6, "num_workers": 0},
        "model": {"backbone": "test_dino_tiny16", "weights": "random"},
        "ielt": {"total_num": 4, "vote_perhead": 2}, "opt": {"lr": 1e-3}}))
    run_dir = new_run_dir(spec, base / "runs")
    assert job.run(spec, run_dir) == "completed"
    return run_dir


def test_train_dry_run_of_an_fgvc_spec(tiny_run, capsys):
    cfg = tiny_run / "config.yaml"
    assert main(["train", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "job: fgvc" in out and "layout: imagefolder" in out.replace("'", "")


def test_evaluate_prints_and_writes_the_run_metrics(tiny_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(tiny_run), "--split", "test", "--out", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    saved = json.loads(out.read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert saved["acc1"] == metrics["test_acc1"] and saved["n"] == 9
    assert saved["per_class_accuracy"] == metrics["per_class_accuracy"]
    assert f"top-1 {metrics['test_acc1']:.4f}" in text and "pattern_2:" in text
    assert main(["evaluate", str(tiny_run), "--split", "val", "--quiet"]) == 0


def test_predict_writes_top_k_csv(tiny_run, tmp_path, capsys):
    folder = tiny_run.parents[1] / "data" / "test" / "pattern_1"
    out = tmp_path / "p.csv"
    assert main(["predict", str(tiny_run), str(folder), "--top", "2", "--out", str(out),
                 "--quiet"]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["path", "class_1", "prob_1", "class_2", "prob_2"] and len(rows) == 4
    for r in rows[1:]:
        p1, p2 = float(r[2]), float(r[4])
        assert 1 >= p1 >= p2 >= 0 and r[1] != r[3] and r[1].startswith("pattern_")
    assert main(["predict", str(tiny_run), str(tmp_path / "nothing.png")]) != 0


def test_vote_view_lays_every_layer_over_the_image(tiny_run, tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from headless.train.fgvc.build import load_fgvc
    from headless.train.fgvc.model import attend, embed
    from headless.train.fgvc.votes import explain_image

    run = load_fgvc(tiny_run)
    img = np.asarray(Image.open(next((tiny_run.parents[1] / "data" / "test" / "pattern_0")
                                     .glob("*.png"))))
    view = explain_image(run, img[:48])  # a 48 x 64 image: the grid is stretched over it
    assert view.maps.shape == (1, 4, 4) and view.selected.sum() == 4
    assert view.scale == (12.0, 16.0) and view.translate == (5.5, 7.5)
    assert len(view.top) == 3 and sum(q for _, q in view.top) == pytest.approx(1.0, abs=1e-5)
    # the map is the MHV score of block 1's CLS attention on the resized image
    t = torch.from_numpy(img[:48] / 255.0).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=(64, 64), mode="bilinear", antialias=True,
                                        align_corners=False).clamp(0, 1)
    x = (t - torch.tensor(run.mean).view(1, 3, 1, 1)) / torch.tensor(run.std).view(1, 3, 1, 1)
    with torch.no_grad():
        _, cls_attn = attend(run.model.vit.blocks[0], embed(run.model.vit, x))
    want = run.model.voting.scores(cls_attn[:, :, 1:], (4, 4))[0].reshape(4, 4)
    np.testing.assert_allclose(view.maps[0], want.numpy(), atol=1e-5)
    # the CLI twin writes the same maps
    png = tmp_path / "one.png"
    Image.fromarray(img[:48]).save(png)
    assert main(["predict", str(tiny_run), str(png), "--votes", str(tmp_path / "v"),
                 "--quiet"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "v" / "one_votes.npy"), view.maps)
