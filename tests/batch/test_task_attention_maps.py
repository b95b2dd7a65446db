"""``dinoseg attention-maps`` as a batch job: the same cache files (names = the store's keys,
bytes = the maps) as the interactive command; images already cached are not recomputed; a
stopped run resumes without redoing finished images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headless.batch import job as batch_job
from headless.batch.records import RECORDS_NAME, read_records, shard_dir
from headless.cli import main as cli
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec

ARGS = ["--backbone", "test_dino_tiny16", "--weights", "random", "--size", "64", "--quiet"]
SIZES = [(60, 80), (80, 60), (60, 80), (64, 64), (80, 60), (60, 80)]  # three grid shapes


class Stopper:
    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.after


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("attn")
    folder = root / "data"
    for i, hw in enumerate(SIZES):
        d = folder / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        arr = np.random.default_rng(i).integers(0, 255, (*hw, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"{i}.png")
    (folder / "a" / "broken.png").write_bytes(b"not a png")
    ref = root / "ref_cache"
    assert cli(["attention-maps", str(folder), *ARGS, "--cache-dir", str(ref)]) == 1  # broken
    return folder, ref


def images_of(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.png"))


def attn_spec(folder: Path, cache: Path, shards: int = 2, batch_size: int = 2, **options):
    opts = {"backbone": "test_dino_tiny16", "weights": "random", "size": 64,
            "cache_dir": str(cache), **options}
    return build_spec({"job": "batch", "task": "attention-maps", "images": images_of(folder),
                       "out": str(cache), "shards": shards, "options": opts, "device": "cpu",
                       "batch_size": batch_size, "num_workers": 0, "cpu_threads": 1})


def cache_files(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (cache / "attention").iterdir()}


def assert_same_cache(a: Path, b: Path) -> None:
    """Same file names (the store's keys: path, mtime, size, backbone, size) and bytes."""
    from headless.train.attention_maps.store import decode_map

    x, y = cache_files(a), cache_files(b)
    assert sorted(x) == sorted(y) and len(x) == len(SIZES)
    for name in x:
        assert x[name] == y[name], name
        assert decode_map(x[name])[0].ndim == 2


def test_a_sharded_run_fills_the_same_cache(data, tmp_path, monkeypatch):
    import headless.features.forward as forward

    folder, ref = data
    spec = attn_spec(folder, tmp_path / "cache", shards=2, batch_size=2)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir) == "completed"
    assert_same_cache(ref, tmp_path / "cache")
    records = [r for i in range(2) for r in read_records(shard_dir(run_dir, i) / RECORDS_NAME)]
    assert sum(1 for r in records if r.get("error")) == 1  # broken.png, alone
    assert all(r["result"]["cached"] is False for r in records if "result" in r)
    # a batch over a cache the command filled computes nothing
    calls: list[int] = []
    real = forward.extract

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(forward, "extract", counting)
    again = attn_spec(folder, ref, shards=1, batch_size=8)
    run_dir = new_run_dir(again, tmp_path / "runs")
    assert batch_job.run(again, run_dir) == "completed"
    cached = [r["result"]["cached"] for r in read_records(shard_dir(run_dir, 0) / RECORDS_NAME)
              if "result" in r]
    assert cached == [True] * len(SIZES) and not calls


def test_a_stopped_run_resumes_without_redoing_finished_images(data, tmp_path, monkeypatch):
    from headless.batch.tasks.attention_maps import AttentionMapsTask

    folder, ref = data
    seen: list[str] = []
    real = AttentionMapsTask.process

    def counting(self, items):
        seen.extend(it.path for it in items)
        return real(self, items)

    monkeypatch.setattr(AttentionMapsTask, "process", counting)
    spec = attn_spec(folder, tmp_path / "cache", shards=1, batch_size=2)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir, stop=Stopper(after=2)) == "stopped"
    first = list(seen)
    assert 0 < len(first) < len(SIZES)
    assert len(cache_files(tmp_path / "cache")) == len(first)
    seen.clear()
    assert batch_job.run(spec, run_dir) == "completed"
    readable = [p for p in images_of(folder) if not p.endswith("broken.png")]
    assert sorted(first + seen) == readable  # each image through the model once
    assert_same_cache(ref, tmp_path / "cache")


def test_the_cli_runner_fills_the_same_cache(data, tmp_path):
    folder, ref = data
    cache = tmp_path / "cache"
    assert cli(["attention-maps", str(folder), *ARGS, "--cache-dir", str(cache), "--runner",
                "local", "--shards", "2", "--batch-size", "4", "--num-workers", "0",
                "--runs-root", str(tmp_path / "runs")]) == 0
    assert_same_cache(ref, cache)
