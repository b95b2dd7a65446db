"""``dinoseg features`` as a batch job: the same PNG / NPZ files and ``summary.json`` as the
interactive command (two folders with a shared file name included); a stopped run resumes
without redoing finished images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headless.batch import job as batch_job
from headless.batch.records import RECORDS_NAME, read_records, shard_dir
from headless.cli import main as cli
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec

BACKBONE = ["--backbone", "test_dino_tiny16", "--weights", "random"]
VIEWS = ["--size", "64", "--foreground", "pca", "--clusters", "2"]
OPTIONS = {"backbone": "test_dino_tiny16", "weights": "random", "size": 64,
           "foreground": "pca", "clusters": 2}


class Stopper:
    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.after


def planted(root: Path) -> list[Path]:
    rng = np.random.default_rng(2)
    paths = []
    for rel, hw in (("a/im0.png", (48, 64)), ("a/same.png", (64, 48)), ("b/same.png", (40, 40)),
                    ("b/im1.png", (56, 56))):
        img = rng.integers(0, 80, (*hw, 3), dtype=np.uint8)
        img[8:30, 10:32] = 230
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        paths.append(p)
    (root / "b" / "broken.png").write_bytes(b"not a png")
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    planted(root / "in")
    ref = root / "single"
    assert cli(["features", str(root / "in" / "a"), str(root / "in" / "b"), *BACKBONE, *VIEWS,
                "--device", "cpu", "--out", str(ref), "--quiet"]) == 1  # broken.png failed
    return root / "in", ref


def images_of(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.png"))


def features_spec(folder: Path, out: Path, shards: int = 2):
    return build_spec({"job": "batch", "task": "features", "images": images_of(folder),
                       "out": str(out), "shards": shards, "options": OPTIONS, "device": "cpu",
                       "num_workers": 0, "cpu_threads": 1})


def assert_same_outputs(a: Path, b: Path) -> None:
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert "a_same_png_foreground.png" in files and "b_same_png_clusters.png" in files
    for name in files:
        if name.endswith(".npz"):  # zip entries carry a time stamp: compare the arrays
            with np.load(a / name) as x, np.load(b / name) as y:
                assert sorted(x.files) == sorted(y.files)
                for k in x.files:
                    np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name}:{k}")
        else:  # PNG views and summary.json: byte for byte
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_sharded_run_writes_what_the_command_writes(data, tmp_path):
    folder, ref = data
    spec = features_spec(folder, tmp_path / "batch", shards=3)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir) == "completed"
    assert_same_outputs(ref, tmp_path / "batch")
    summary = json.loads((ref / "summary.json").read_text())
    assert sorted(summary["images"]) == ["a_same_png", "b_same_png", "im0.png", "im1.png"]
    assert list(summary["failed"]) == ["broken.png"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["merged"] == 5 and list(manifest["failures"]) == ["broken.png"]


def test_a_stopped_run_resumes_without_redoing_finished_images(data, tmp_path, monkeypatch):
    from headless.batch.tasks.features import FeaturesTask

    folder, ref = data
    seen: list[str] = []
    real = FeaturesTask.process

    def counting(self, items):
        seen.extend(it.path for it in items)
        return real(self, items)

    monkeypatch.setattr(FeaturesTask, "process", counting)
    spec = features_spec(folder, tmp_path / "batch", shards=1)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir, stop=Stopper(after=2)) == "stopped"
    first = list(seen)
    records = shard_dir(run_dir, 0) / RECORDS_NAME
    assert 0 < len(first) < 4 and len(list(read_records(records))) == len(first)
    assert not (tmp_path / "batch" / "summary.json").exists()
    seen.clear()
    assert batch_job.run(spec, run_dir) == "completed"
    readable = [p for p in images_of(folder) if not p.endswith("broken.png")]
    assert sorted(first + seen) == readable  # each image processed once
    assert len(list(read_records(records))) == 5
    assert_same_outputs(ref, tmp_path / "batch")


def test_the_cli_runner_gives_the_same_files(data, tmp_path):
    folder, ref = data
    out = tmp_path / "batch"
    assert cli(["features", str(folder / "a"), str(folder / "b"), *BACKBONE, *VIEWS,
                "--device", "cpu", "--out", str(out), "--quiet", "--runner", "local",
                "--shards", "2", "--num-workers", "1", "--runs-root", str(tmp_path / "runs")]) == 1
    assert_same_outputs(ref, out)  # exit 1 as the interactive command: broken.png failed
