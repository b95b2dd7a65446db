"""Label-budget sweep and embedding explorer on planted features; the CLI twins' bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headless.train.data.errors import DatasetError
from headless.train.ssl.evaluation import LabelledFeatures
from headless.train.ssl.explore import explore
from headless.train.ssl.sweep import check_budgets, stratified_subset, summarise, sweep


def _clusters(n_per_class: int, noise: float, seed: int, dim: int = 16, classes: int = 3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 2
    y = np.repeat(np.arange(classes), n_per_class)
    return (centres[y] + rng.normal(size=(len(y), dim)) * noise).astype(np.float32), y


def _feats(noise: float, name: str) -> LabelledFeatures:
    tx, ty = _clusters(30, noise, 0)
    vx, vy = _clusters(20, noise, 0)  # same centres (seed 0), other noise draws below
    vx = vx + np.random.default_rng(1).normal(size=vx.shape).astype(np.float32) * noise
    return LabelledFeatures(["a", "b", "c"], tx, ty, vx, vy, [], [], name)


def test_budgets_above_the_smallest_class_are_refused():
    with pytest.raises(DatasetError, match=r"class 'b' has 2 training images"):
        check_budgets([0, 0, 0, 1, 1], ["a", "b"], [1, 5])
    check_budgets([0, 0, 1, 1], ["a", "b"], [1, 2])


def test_stratified_subsets_are_exact_and_seeded():
    y = np.repeat(np.arange(4), 10)
    a = stratified_subset(y, 3, seed=7)
    assert np.array_equal(np.bincount(y[a]), [3, 3, 3, 3])
    assert np.array_equal(a, stratified_subset(y, 3, seed=7))
    assert not np.array_equal(a, stratified_subset(y, 3, seed=8))


def test_sweep_rows_grow_with_labels_and_separate_backbones(tmp_path):
    from headless.train.ssl.sweep import write_outputs

    good, bad = _feats(1.0, "good"), _feats(6.0, "noisy")
    rows = sweep({"good": good, "noisy": bad}, [1, 10], repeats=3, k=5, linear_epochs=30,
                 linear_lr=1.0)
    assert len(rows) == 2 * 2 * 3 * 2
    s = summarise(rows)
    assert s["good knn"][0] == [1, 10]
    assert s["good knn"][1][1] >= s["good knn"][1][0]  # more labels: no worse
    assert s["good linear"][1][1] > s["noisy linear"][1][1]  # the planted better features win
    write_outputs(rows, tmp_path / "s.csv", tmp_path / "s.png")
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == \
        "backbone,method,labels_per_class,repeat,top1"
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (720, 480)


def test_explorer_finds_the_planted_outlier_and_mislabel():
    x, y = _clusters(20, 0.3, 2)
    x = np.concatenate([x, np.full((1, x.shape[1]), 0.0, np.float32) + 9.0])  # far away
    y = np.concatenate([y, [0]])
    y[5] = 2  # a class-0 image labelled as class 2
    emb = explore(x, y, k=5, projection="pca")
    assert emb.projection == "pca" and emb.xy.shape == (len(x), 2)
    assert emb.ranking("knn_distance")[0] == len(x) - 1
    assert emb.ranking("lof")[0] == len(x) - 1
    assert emb.ranking("mislabel")[0] == 5 and emb.predicted[5] == 0
    assert emb.mislabel[5] > 0.9 and np.median(emb.mislabel) < 0.1


def _folder(root: Path, classes: list[str], n: int = 3, size: int = 40) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(
                root / c / f"{i}.png")


def test_cli_twins_run_and_name_bad_input(tmp_path, capsys):
    from headless.cli import main

    _folder(tmp_path / "d" / "train", ["a", "b"])
    _folder(tmp_path / "d" / "val", ["a", "b"], n=2)
    common = ["--backbone", "test_dino_tiny16", "--weights", "random", "--size", "32",
              "--device", "cpu", "--quiet"]
    out = tmp_path / "knn.json"
    assert main(["eval-knn", str(tmp_path / "d"), *common, "--k", "1", "3",
                 "--out", str(out)]) == 0
    import json

    res = json.loads(out.read_text())
    assert res["n_train"] == 6 and res["n_val"] == 4 and "knn3_top1" in res
    assert main(["eval-linear", str(tmp_path / "d"), *common, "--epochs", "2",
                 "--n-last-blocks", "2", "--avgpool"]) == 0
    assert main(["label-sweep", str(tmp_path / "d"), *common, "--budgets", "1", "5",
                 "--csv", str(tmp_path / "s.csv"), "--png", str(tmp_path / "s.png")]) == 2
    assert "class 'a' has 3 training images" in capsys.readouterr().err
    _folder(tmp_path / "bad" / "train", ["a", "b"])
    _folder(tmp_path / "bad" / "val", ["a", "c"])
    assert main(["eval-knn", str(tmp_path / "bad"), *common]) == 2
    assert "only in train: b; only in val: c" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "d" / "train"), *common[:-1], "--k", "3",
                 "--projection", "pca", "--csv", str(tmp_path / "e.csv"),
                 "--png", str(tmp_path / "e.png")]) == 0
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("path,label,predicted,x,y,knn_distance")
