"""``dinoseg segment --probe`` as a batch job: label / probability TIFFs equal the interactive
command's (an image, a stack, an image the probe cannot use); QC records in the record and the
project; a stopped run resumes without redoing finished images; scribble mode refuses
``--runner``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from headless.batch import job as batch_job
from headless.batch.records import RECORDS_NAME, read_records, shard_dir
from headless.cli import main as cli
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec


def crf_options() -> dict:
    """What ``--crf --crf-iterations 2`` sets (the defaults otherwise)."""
    from dataclasses import asdict

    from headless.segment.crf import CRFParams

    return {**asdict(CRFParams()), "iterations": 2}


class Stopper:
    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.after


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A classical linear probe trained on planted scribbles, a folder to apply it to (two grey
    images, a two-slice stack, a colour image the grey probe refuses) and the interactive
    command's output (with CRF and probabilities)."""
    from headless.progress import run
    from headless.segment.workflow import segment_image

    root = tmp_path_factory.mktemp("segment")
    rng = np.random.default_rng(3)

    def grey(seed_shift: int) -> np.ndarray:
        img = rng.integers(0, 90, (40, 44), dtype=np.uint8)
        img[10 + seed_shift:28, 8:30] = 200
        return img

    img = grey(0)
    scr = np.zeros(img.shape, np.uint8)
    scr[:6], scr[14:22, 12:24] = 85, 170
    probe, _ = run(segment_image(img, scr, classifier="linear"))
    probe_path = probe.save(root / "probe.npz")
    folder = root / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", grey(0))
    tifffile.imwrite(folder / "b.tif", grey(4))
    tifffile.imwrite(folder / "stack.tif", np.stack([grey(2), grey(6)]))
    tifffile.imwrite(folder / "colour.tif", rng.integers(0, 255, (40, 44, 3), dtype=np.uint8))
    ref = root / "single"
    assert cli(["segment", str(folder), "--probe", str(probe_path), "--out", str(ref), "--probs",
                "--crf", "--crf-iterations", "2", "--quiet"]) == 1  # colour.tif is skipped
    from headless.qc.store import load_qc

    assert sorted(load_qc(folder / "stack.tif")["tasks"]) == ["segment"]  # the command's QC
    assert load_qc(folder / "colour.tif")["tasks"] == {}
    return folder, Path(probe_path), ref


def segment_spec(folder: Path, out: Path, probe: Path, shards: int = 2):
    images = sorted(str(p) for p in folder.glob("*.tif"))
    opts = {"probe": str(probe), "weights": "official", "crf": crf_options(), "probs": True}
    return build_spec({"job": "batch", "task": "segment", "images": images, "out": str(out),
                       "shards": shards, "options": opts, "device": "cpu", "num_workers": 0,
                       "cpu_threads": 1})


def assert_same_outputs(a: Path, b: Path) -> None:
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert files == ["a_labels.tif", "a_proba.tif", "b_labels.tif", "b_proba.tif",
                     "stack_labels.tif", "stack_proba.tif"]
    for name in files:
        x, y = tifffile.imread(a / name), tifffile.imread(b / name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_a_sharded_run_writes_what_the_command_writes(data, tmp_path):
    from headless.qc.store import load_qc
    from headless.qc.uncertainty import probability_uncertainty

    folder, probe, ref = data
    spec = segment_spec(folder, tmp_path / "batch", probe, shards=3)
    for qc_file in (folder / ".dinoseg").rglob("qc.json"):
        qc_file.unlink()  # the command's records: the job must write its own
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir) == "completed"
    assert_same_outputs(ref, tmp_path / "batch")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["merged"] == 4 and list(manifest["failures"]) == ["colour.tif"]
    records = {r["name"]: r for i in range(3)
               for r in read_records(shard_dir(run_dir, i) / RECORDS_NAME)}
    assert records["colour.tif"]["error"] and "result" not in records["colour.tif"]
    a_proba = tifffile.imread(tmp_path / "batch" / "a_proba.tif")
    assert records["a.tif"]["result"]["qc"] == probability_uncertainty(a_proba)
    assert records["stack.tif"]["result"]["slices"] == 2
    for name in ("a.tif", "b.tif", "stack.tif"):  # the command and the job saved the same QC
        saved = load_qc(folder / name)["tasks"]["segment"]
        assert saved["uncertainty"] == records[name]["result"]["qc"]["uncertainty"]


def test_a_stopped_run_resumes_without_redoing_finished_images(data, tmp_path, monkeypatch):
    from headless.batch.tasks.segment import SegmentTask

    folder, probe, ref = data
    seen: list[str] = []
    real = SegmentTask.process

    def counting(self, items):
        seen.extend(it.name for it in items)
        return real(self, items)

    monkeypatch.setattr(SegmentTask, "process", counting)
    spec = segment_spec(folder, tmp_path / "batch", probe, shards=1)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir, stop=Stopper(after=2)) == "stopped"
    first = list(seen)
    records = shard_dir(run_dir, 0) / RECORDS_NAME
    assert 0 < len(first) < 4 and len(list(read_records(records))) == len(first)
    seen.clear()
    assert batch_job.run(spec, run_dir) == "completed"
    assert sorted(first + seen) == ["a.tif", "b.tif", "colour.tif", "stack.tif"]  # each once
    assert len(list(read_records(records))) == 4
    assert_same_outputs(ref, tmp_path / "batch")


def test_the_cli_runner_gives_the_same_files(data, tmp_path, capsys):
    folder, probe, ref = data
    common = ["segment", str(folder), "--probe", str(probe), "--probs", "--crf",
              "--crf-iterations", "2", "--quiet"]
    assert cli([*common, "--out", str(tmp_path / "batch"), "--runner", "local", "--shards", "2",
                "--num-workers", "0", "--runs-root", str(tmp_path / "runs")]) == 1
    assert_same_outputs(ref, tmp_path / "batch")  # exit 1 as the interactive command
    assert "failed: colour.tif" in capsys.readouterr().err


def test_scribble_mode_refuses_the_runner_in_one_line(data, tmp_path, capsys):
    folder, _, _ = data
    code = cli(["segment", str(folder / "a.tif"), "--scribbles", str(folder / "a.tif"),
                "--out", str(tmp_path / "o"), "--runner", "local",
                "--runs-root", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--runner applies a saved probe" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o").exists()
