"""``dinoseg sam`` as a batch job: per-image files and boxes files equal the interactive command's;
a stopped run resumes without redoing finished images; QC records land in the project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from headless import sam as S
from headless.batch import job as batch_job
from headless.batch.records import RECORDS_NAME, read_records, shard_dir
from headless.cli import main as cli
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec

AUTO = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
        "--box-nms-thresh", "1.0"]
PARAMS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
          "box_nms_thresh": 1.0}
CHOOSE = ["--choose", "attention", "--backbone", "test_dino_tiny16", "--backbone-weights",
          "random"]
NAMES = ("im0", "im1", "im2", "im3")


class Stopper:
    """A stop flag that trips after ``after`` checks (a cancel arriving mid-run)."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.after


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four small images (RGB of two sizes and a 16-bit grey), a tiny SAM checkpoint, and the
    interactive command's output on them (the reference)."""
    root = tmp_path_factory.mktemp("sam")
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES[:3]):
        img = (rng.random((40 + 8 * (i % 2), 50, 3)) * 60).astype(np.uint8)
        img[10:30, 12:35] = 220
        Image.fromarray(img).save(folder / f"{name}.png")
    tifffile.imwrite(folder / "im3.tif", (rng.random((36, 44)) * 4000).astype(np.uint16))
    ckpt = S.save_random_checkpoint(root / "tiny.pth")
    ref = root / "single"
    assert cli(["sam", str(folder), "--model", "test_sam_tiny", "--weights", str(ckpt),
                "--out", str(ref), *AUTO, *CHOOSE, "--quiet"]) == 0
    from headless.qc.store import load_qc

    for name in ("im0.png", "im3.tif"):  # the command saved each image's QC in the project
        qc = json.loads((ref / f"{Path(name).stem}_sam.json").read_text())["qc"]
        assert load_qc(folder / name)["tasks"]["sam"]["uncertainty"] == qc["uncertainty"]
    return folder, ckpt, ref


def sam_spec(folder: Path, out: Path, ckpt: Path, shards: int = 2, **options):
    opts = {"model": "test_sam_tiny", "weights": str(ckpt), "params": PARAMS,
            "choose": "attention", "backbone": "test_dino_tiny16", "backbone_weights": "random",
            **options}
    images = sorted(str(p) for p in folder.iterdir() if p.is_file())
    return build_spec({"job": "batch", "task": "sam", "images": images, "out": str(out),
                       "shards": shards, "options": opts, "device": "cpu", "num_workers": 0,
                       "cpu_threads": 1})


def n_records(run_dir: Path, shards: int) -> int:
    return sum(len(list(read_records(shard_dir(run_dir, i) / RECORDS_NAME)))
               for i in range(shards))


def assert_same_outputs(a: Path, b: Path) -> None:
    for stem in NAMES:
        for kind in ("labels", "masks"):
            x, y = a / f"{stem}_sam_{kind}.tif", b / f"{stem}_sam_{kind}.tif"
            assert x.exists() == y.exists(), (stem, kind)
            if x.exists():
                np.testing.assert_array_equal(tifffile.imread(x), tifffile.imread(y))
        assert (json.loads((a / f"{stem}_sam.json").read_text())
                == json.loads((b / f"{stem}_sam.json").read_text())), stem
    for name in ("sam_boxes.json", "pseudo_gt.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_sharded_run_writes_what_the_command_writes(data, tmp_path):
    from headless.qc.store import load_qc

    folder, ckpt, ref = data
    spec = sam_spec(folder, tmp_path / "batch", ckpt, shards=3)
    for qc_file in (folder / ".dinoseg").rglob("qc.json"):
        qc_file.unlink()  # the command's records: the job must write its own
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir) == "completed"
    assert_same_outputs(ref, tmp_path / "batch")
    info = json.loads((ref / "im0_sam.json").read_text())
    assert info["chosen"]["rule"] == "attention" and len(info["masks"]) > 1
    # QC: in each side file, in the batch record, and in the image's project
    records = {r["name"]: r for i in range(3)
               for r in read_records(shard_dir(run_dir, i) / RECORDS_NAME)}
    assert sorted(records) == ["im0.png", "im1.png", "im2.png", "im3.tif"]
    for name, rec in records.items():
        qc = json.loads((ref / f"{Path(name).stem}_sam.json").read_text())["qc"]
        assert rec["result"]["qc"] == qc and 0.0 <= qc["uncertainty"] <= 1.0
        saved = load_qc(folder / name)["tasks"]["sam"]
        assert saved["uncertainty"] == qc["uncertainty"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["merged"] == 4 and manifest["failed"] == 0


def test_a_stopped_run_resumes_without_redoing_finished_images(data, tmp_path, monkeypatch):
    from headless.batch.tasks.sam import SamTask

    folder, ckpt, ref = data
    seen: list[str] = []
    real = SamTask.process

    def counting(self, items):
        seen.extend(it.name for it in items)
        return real(self, items)

    monkeypatch.setattr(SamTask, "process", counting)
    spec = sam_spec(folder, tmp_path / "batch", ckpt, shards=2, no_cache=True)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    project = sorted((folder / ".dinoseg").rglob("*"))
    stamps = {p: p.stat().st_mtime_ns for p in project}
    assert batch_job.run(spec, run_dir, stop=Stopper(after=2)) == "stopped"
    first = list(seen)
    assert 0 < len(first) < 4 and not (tmp_path / "batch" / "sam_boxes.json").exists()
    assert n_records(run_dir, 2) == len(first)  # each finished image on disk, once
    seen.clear()
    assert batch_job.run(spec, run_dir) == "completed"
    assert sorted(first + seen) == ["im0.png", "im1.png", "im2.png", "im3.tif"]  # none twice
    assert n_records(run_dir, 2) == 4
    assert_same_outputs(ref, tmp_path / "batch")
    # no_cache (--no-cache): the project was left alone, no embedding or QC record written
    assert sorted((folder / ".dinoseg").rglob("*")) == project
    assert {p: p.stat().st_mtime_ns for p in project} == stamps


def test_box_prompts_through_the_cli_runner(data, tmp_path):
    """``--boxes`` with ``--runner local``: a real background worker, same files as without."""
    from headless.boxes import Box, BoxSet, write_boxes

    folder, ckpt, _ = data
    prompts = BoxSet()
    prompts.add("im0.png", [Box(2, 3, 30, 40, label="cat"), Box(10, 10, 45, 38)], size=(50, 40))
    prompts.add("im3.tif", [], size=(44, 36))
    pfile = tmp_path / "prompts.csv"
    write_boxes(pfile, prompts)
    common = ["sam", str(folder), "--boxes", str(pfile), "--model", "test_sam_tiny",
              "--weights", str(ckpt), "--format", "csv", "--no-cache", "--quiet"]
    assert cli([*common, "--out", str(tmp_path / "single")]) == 0
    assert cli([*common, "--out", str(tmp_path / "batch"), "--runner", "local", "--shards", "2",
                "--num-workers", "0", "--runs-root", str(tmp_path / "runs")]) == 0
    a, b = tmp_path / "single", tmp_path / "batch"
    assert (a / "sam_boxes.csv").read_bytes() == (b / "sam_boxes.csv").read_bytes()
    for stem in NAMES:
        assert (json.loads((a / f"{stem}_sam.json").read_text())
                == json.loads((b / f"{stem}_sam.json").read_text()))
        np.testing.assert_array_equal(tifffile.imread(a / f"{stem}_sam_labels.tif"),
                                      tifffile.imread(b / f"{stem}_sam_labels.tif"))
    assert len(json.loads((b / "im0_sam.json").read_text())["masks"]) == 2


def test_bad_options_fail_before_a_run_folder_exists(data, tmp_path, capsys):
    folder, ckpt, _ = data
    with pytest.raises(ValueError, match="points_per_side"):
        batch_job.preflight(sam_spec(folder, tmp_path / "o", ckpt,
                                     params={**PARAMS, "points_per_side": 0}))
    code = cli(["sam", str(folder), "--model", "test_sam_tiny", "--weights", str(ckpt),
                "--out", str(tmp_path / "o"), "--runner", "local", "--shards", "9",
                "--runs-root", str(tmp_path / "runs")])
    assert code == 2 and "at most one shard per image" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
