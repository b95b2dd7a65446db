"""Boxes as a batch job: the merge equals the interactive command, resumes skip finished work.

A planted folder (bright objects on noise, two repeated sizes so that batches form) and a tiny
ViT with fixed random weights saved as a file; the real DINOv2 weights for the kill/resume
through a real background process, and submitit's local executor for the SLURM array path.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headless.batch import job as batch_job
from headless.batch.records import RECORDS_NAME, done_keys, shard_dir
from headless.cli import main as cli
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec

BACKBONE = "test_dino_tiny16"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    import torch

    from headless.features.backbones import load_backbone

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    torch.save(load_backbone(BACKBONE, "random").model.state_dict(), path)
    return path


def planted(folder: Path, n: int = 9) -> list[Path]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        h, w = [(60, 80), (80, 60), (70, 70)][i % 3]
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        y, x = rng.integers(5, h // 2), rng.integers(5, w // 2)
        img[y:y + h // 3, x:x + w // 3] = 230
        path = folder / f"im{i:02d}.png"
        Image.fromarray(img).save(path)
        out.append(path)
    return out


def boxes_spec(images, out, weights, shards=3, batch_size=4, **options):
    opts = {"method": "lost", "backbone": BACKBONE, "weights": str(weights), "size": 64,
            **options}
    return build_spec({"job": "batch", "task": "boxes", "images": [str(p) for p in images],
                       "out": str(out), "shards": shards, "options": opts, "device": "cpu",
                       "batch_size": batch_size, "num_workers": 0, "cpu_threads": 1})


class Stopper:
    """A stop flag that trips after ``after`` checks (a cancel arriving mid-run)."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.after


def interactive(folder: Path, out: Path, weights: Path) -> None:
    assert cli(["boxes", str(folder), "--method", "lost", "--backbone", BACKBONE, "--weights",
                str(weights), "--size", "64", "--out", str(out), "--quiet"]) == 0


def test_merged_boxes_equal_the_interactive_command(tmp_path, tiny_weights):
    images = planted(tmp_path / "imgs")
    interactive(tmp_path / "imgs", tmp_path / "single.json", tiny_weights)
    spec = boxes_spec(images, tmp_path / "merged.json", tiny_weights)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir) == "completed"
    single = json.loads((tmp_path / "single.json").read_text())
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged == single
    assert len(single["images"]) == 9 and len(single["annotations"]) >= 9
    meta = [json.loads((tmp_path / f"{n}.json.meta.json").read_text())
            for n in ("single", "merged")]
    assert meta[0] == meta[1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["merged"] == 9 and manifest["failed"] == 0 and manifest["shards"] == 3
    qc = (tmp_path / "merged.json.qc.csv").read_text().splitlines()
    assert qc[0] == "image,uncertainty,reasons" and len(qc) == 10
    from headless.jobs.runs import run_info

    info = run_info(run_dir)  # dinoseg runs list: images done over every shard
    assert (info.step, info.total_steps) == (9, 9)


def test_a_stopped_run_resumes_without_redoing_finished_images(tmp_path, tiny_weights,
                                                               monkeypatch):
    from headless.batch.tasks.boxes import BoxesTask

    images = planted(tmp_path / "imgs")
    full = boxes_spec(images, tmp_path / "full.json", tiny_weights)
    assert batch_job.run(full, new_run_dir(full, tmp_path / "runs")) == "completed"

    seen: list[str] = []
    real = BoxesTask.process

    def counting(self, items):
        seen.extend(it.name for it in items)
        return real(self, items)

    monkeypatch.setattr(BoxesTask, "process", counting)
    spec = boxes_spec(images, tmp_path / "resumed.json", tiny_weights, batch_size=2)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir, stop=Stopper(after=1)) == "stopped"
    first = list(seen)
    assert 0 < len(first) < 9 and not (tmp_path / "resumed.json").exists()
    seen.clear()
    assert batch_job.run(spec, run_dir) == "completed"
    assert sorted(first + seen) == sorted(p.name for p in images)  # nothing twice
    assert (tmp_path / "resumed.json").read_bytes() == (tmp_path / "full.json").read_bytes()


def test_an_edited_image_or_a_new_setting_is_recomputed(tmp_path, tiny_weights):
    images = planted(tmp_path / "imgs", n=4)
    spec = boxes_spec(images, tmp_path / "a.json", tiny_weights, shards=1)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir) == "completed"
    records = shard_dir(run_dir, 0) / RECORDS_NAME
    assert len(done_keys(records)) == 4
    (shard_dir(run_dir, 0) / "done.json").unlink()
    img = np.asarray(Image.open(images[2])).copy()
    img[:10] = 255
    Image.fromarray(img).save(images[2])  # the user edited one image
    assert batch_job.run(spec, run_dir) == "completed"
    assert len(done_keys(records)) == 5  # only the edited image again


def test_unreadable_images_fail_alone_and_are_listed(tmp_path, tiny_weights):
    images = planted(tmp_path / "imgs", n=4)
    bad = tmp_path / "imgs" / "broken.png"
    bad.write_bytes(b"not a png")
    spec = boxes_spec([*images, bad], tmp_path / "m.json", tiny_weights, shards=2)
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert batch_job.run(spec, run_dir) == "completed"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["merged"] == 5 and list(manifest["failures"]) == ["broken.png"]
    assert len(json.loads((tmp_path / "m.json").read_text())["images"]) == 4


def test_preflight_names_the_problem_before_anything_starts(tmp_path, tiny_weights):
    images = planted(tmp_path / "imgs", n=2)
    with pytest.raises(ValueError, match="no parameter 'kk'"):
        batch_job.preflight(boxes_spec(images, tmp_path / "m.json", tiny_weights, shards=1,
                                       params={"kk": 3}))
    with pytest.raises(ValueError, match="at most one shard per image"):
        batch_job.preflight(boxes_spec(images, tmp_path / "m.json", tiny_weights, shards=3))
    with pytest.raises(ValueError, match="no such image file"):
        batch_job.preflight(boxes_spec([tmp_path / "nope.png"], tmp_path / "m.json",
                                       tiny_weights, shards=1))
    code = cli(["boxes", str(tmp_path / "imgs"), "--method", "lost", "--backbone", BACKBONE,
                "--weights", str(tiny_weights), "--out", str(tmp_path / "m.json"),
                "--runner", "local", "--shards", "5", "--runs-root", str(tmp_path / "runs")])
    assert code == 2 and not (tmp_path / "runs").exists()  # refused before any run folder


@pytest.mark.slow
def test_a_killed_background_run_resumes_to_the_same_merge(tmp_path, shared_weights,
                                                           shared_data, capsys):
    """SIGKILL of the local runner's worker mid-run, then ``dinoseg runs resume``."""
    import shutil

    from headless.jobs.runlog import read_status

    src = sorted((shared_data / "raccoon_voc" / "images").glob("*.jpg"))[:24]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in src:
        shutil.copy(p, folder)
    common = ["boxes", str(folder), "--method", "lost", "--backbone", "dinov2_vits14",
              "--weights", str(shared_weights), "--size", "224", "--quiet"]
    assert cli([*common, "--out", str(tmp_path / "single.json")]) == 0
    runs = tmp_path / "runs"
    assert cli([*common, "--out", str(tmp_path / "batch.json"), "--runner", "local",
                "--shards", "2", "--batch-size", "2", "--num-workers", "1",
                "--runs-root", str(runs), "--detach"]) == 0
    run_dir = next(runs.iterdir())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(done_keys(shard_dir(run_dir, 0) / RECORDS_NAME)) >= 4:
            break
        time.sleep(0.05)
    os.killpg(int(read_status(run_dir)["pgid"]), signal.SIGKILL)
    time.sleep(0.5)
    before = len(done_keys(shard_dir(run_dir, 0) / RECORDS_NAME))
    assert 4 <= before < 12 and not (tmp_path / "batch.json").exists()
    assert cli(["runs", "--runs-root", str(runs), "resume", run_dir.name, "--wait"]) == 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and read_status(run_dir).get("state") != "completed":
        time.sleep(0.2)
    single = json.loads((tmp_path / "single.json").read_text())
    assert json.loads((tmp_path / "batch.json").read_text()) == single
    capsys.readouterr()
    assert cli(["runs", "--runs-root", str(runs), "show", run_dir.name]) == 0
    shown = capsys.readouterr().out
    assert "24/24 images" in shown and "2/2 shard(s) done" in shown and "batch.json" in shown
    # every image of shard 0 once: the resumed worker skipped what the killed one finished
    keys = [json.loads(x)["key"] for x in
            (shard_dir(run_dir, 0) / RECORDS_NAME).read_bytes().splitlines()]
    assert len(keys) == len(set(keys)) == 12


@pytest.mark.slow
def test_slurm_array_through_submitit_local_executor(tmp_path, tiny_weights):
    from headless.jobs import runners
    from headless.jobs.runlog import read_status

    pytest.importorskip("submitit")
    images = planted(tmp_path / "imgs", n=6)
    interactive(tmp_path / "imgs", tmp_path / "single.json", tiny_weights)
    spec = boxes_spec(images, tmp_path / "merged.json", tiny_weights, shards=2)
    handle = runners.launch(spec, runner=runners.SlurmRunner(cluster="local"),
                            runs_root=tmp_path / "runs")
    assert len(handle.info["slurm_array"]) == 2
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and read_status(handle.run_dir).get("state") not in (
            "completed", "failed"):
        time.sleep(0.3)
    status = read_status(handle.run_dir)
    assert status["state"] == "completed", status
    assert status["shards_done"] == 2
    from headless.jobs.runs import run_info

    info = run_info(handle.run_dir)  # dinoseg runs list sums the array tasks' progress
    assert (info.step, info.total_steps) == (6, 6)
    assert (json.loads((tmp_path / "merged.json").read_text())
            == json.loads((tmp_path / "single.json").read_text()))


@pytest.mark.slow
def test_torchrun_ranks_split_the_shards_and_rank0_merges(tmp_path, tiny_weights):
    """Two CPU ranks under torch.distributed.run: shards 0,2 and 1,3; one merged output."""
    from headless.jobs.runlog import read_log

    planted(tmp_path / "imgs", n=8)
    interactive(tmp_path / "imgs", tmp_path / "single.json", tiny_weights)
    code = cli(["boxes", str(tmp_path / "imgs"), "--method", "lost", "--backbone", BACKBONE,
                "--weights", str(tiny_weights), "--size", "64", "--out",
                str(tmp_path / "merged.json"), "--runner", "torchrun", "--device", "cpu",
                "--nproc", "2", "--shards", "4", "--num-workers", "0",
                "--runs-root", str(tmp_path / "runs"), "--quiet"])
    assert code == 0
    run_dir = next((tmp_path / "runs").iterdir())
    assert (json.loads((tmp_path / "merged.json").read_text())
            == json.loads((tmp_path / "single.json").read_text()))
    shards = sorted(r["shard"] for r in read_log(run_dir) if r["kind"] == "shard")
    assert shards == [0, 2]  # rank 0's log; rank 1 ran 1 and 3
    assert all((shard_dir(run_dir, i) / "done.json").is_file() for i in range(4))


def test_memory_is_estimated_from_the_run_images_before_it_starts(tmp_path, tiny_weights,
                                                                  monkeypatch):
    from headless.batch.tasks.boxes import max_tokens

    images = planted(tmp_path / "imgs", n=3)  # 60x80, 80x60, 70x70 at patch 16
    assert max_tokens(images, 16, None) == 5 * 5  # 80 px -> 5 patches (upscaled to 4 min)
    assert max_tokens(images, 16, 64) == 16
    spec = boxes_spec(images, tmp_path / "m.json", tiny_weights, shards=1)
    assert batch_job.preflight(spec) == {}

    monkeypatch.setenv("DINOSEG_MAX_MEMORY", str(2**20))  # a machine with 1 MiB free
    with pytest.raises(ValueError, match=r"needs about 1\.0 GiB per worker and 0\.0 GiB"):
        batch_job.preflight(spec)


def test_bf16_precision_is_a_setting_of_its_own(tmp_path, tiny_weights):
    """bf16 forwards are asked for explicitly, keyed apart from float32, checked up front."""
    from headless.batch.shards import settings_digest
    from headless.batch.tasks.boxes import BoxesTask

    images = planted(tmp_path / "imgs", n=3)
    f32 = BoxesTask({"backbone": BACKBONE}, "x.json").key_settings()
    bf16 = BoxesTask({"backbone": BACKBONE, "precision": "bf16"}, "x.json").key_settings()
    assert "precision" not in f32  # keys of float32 runs are those of earlier runs
    assert settings_digest("boxes", f32) != settings_digest("boxes", bf16)
    spec = boxes_spec(images, tmp_path / "b.json", tiny_weights, shards=1, precision="bf16")
    assert batch_job.run(spec, new_run_dir(spec, tmp_path / "runs")) == "completed"
    assert len(json.loads((tmp_path / "b.json").read_text())["images"]) == 3
    with pytest.raises(ValueError, match="precision must be float32 or bf16"):
        batch_job.preflight(boxes_spec(images, tmp_path / "c.json", tiny_weights, shards=1,
                                       precision="fp8"))
    assert cli(["boxes", str(tmp_path / "imgs"), "--method", "lost", "--backbone", BACKBONE,
                "--weights", str(tiny_weights), "--out", str(tmp_path / "d.json"),
                "--precision", "bf16"]) == 2  # the interactive path is float32 only
