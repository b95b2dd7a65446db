"""``dinoseg train`` and ``dinoseg runs``: real worker processes, real run folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from headless.cli import main
from headless.jobs.runlog import LogTail, read_log, read_status
from headless.jobs.spec import build_spec
from headless.train.synthetic import make_shapes_dataset


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DINOSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    make_shapes_dataset(tmp_path / "ds", n_per_class=6, size=24)
    spec = {
        "data": {"root": "ds", "boxes": "ds/boxes.json", "image_size": 24, "batch_size": 4,
                 "num_workers": 0},
        "model": {"type": "test_resnet_tiny"}, "augment": {"enabled": False},
        "num_epochs": 2, "cpu_threads": 1, "log": {"interval": 1},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def _runs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "runs").iterdir()) if (root / "runs").is_dir() else []


def test_train_wait_then_list_and_show(env, capsys):
    code = main(["train", "spec.yaml", "--set", "opt.lr=0.02", "name=cli", "--wait"])
    out = capsys.readouterr().out
    assert code == 0, out
    (run_dir,) = _runs(env)
    assert "completed" in out and "acc1:" in out and run_dir.name.endswith("classifier-cli")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["opt"]["lr"] == 0.02 and config["data"]["root"] == str(env / "ds")
    assert read_status(run_dir)["state"] == "completed"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert run_dir.name in listing and "completed" in listing and "6/6" in listing
    assert main(["runs", "show", run_dir.name[:15]]) == 0
    shown = capsys.readouterr().out
    assert f"acc1 {metrics['acc1']:.4f}" in shown and "state:    completed" in shown
    assert main(["runs", "resume", run_dir.name]) == 2
    assert "has completed; nothing to resume" in capsys.readouterr().err


def test_bad_input_is_refused_before_anything_starts(env, capsys):
    assert main(["train", "spec.yaml", "--set", "opt.lrr=0.1"]) == 2
    assert "opt.lrr: unknown field (did you mean 'opt.lr'?)" in capsys.readouterr().err
    (env / "one" / "only").mkdir(parents=True)
    for p in list((env / "ds" / "red_disc").iterdir())[:2]:
        (env / "one" / "only" / p.name).write_bytes(p.read_bytes())
    assert main(["train", "spec.yaml", "--set", "data.root=one", "data.boxes=null"]) == 2
    assert "only one class ('only')" in capsys.readouterr().err
    assert main(["train", "spec.yaml", "--runner", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "SLURM is not available here" in err or "submitit" in err
    assert _runs(env) == []  # nothing was created


def test_print_defaults_and_dry_run(env, capsys):
    assert main(["train", "--print-defaults"]) == 0
    defaults = yaml.safe_load(capsys.readouterr().out)
    assert build_spec(defaults) == build_spec({})
    assert main(["train", "spec.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out)
    assert resolved["data"]["root"] == str(env / "ds")
    assert "# n_images_with_boxes: 18" in out and _runs(env) == []


def test_cancel_checkpoints_and_resume_finishes(env, capsys):
    assert main(["train", "spec.yaml", "--set", "max_steps=150"]) == 0
    (run_dir,) = _runs(env)
    tail = LogTail(run_dir / "log.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(r["kind"] == "train" for r in tail.read_new()):
        time.sleep(0.05)
    capsys.readouterr()
    assert main(["runs", "cancel", run_dir.name]) == 0
    assert "asked process" in capsys.readouterr().out
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and read_status(run_dir).get("state") == "running":
        time.sleep(0.1)
    assert read_status(run_dir)["state"] == "cancelled"
    stop = [r for r in read_log(run_dir) if r.get("reason") == "stop"]
    assert stop and 0 < stop[0]["step"] < 150 and (run_dir / "checkpoints" / "last.pt").is_file()
    assert main(["runs", "show", run_dir.name]) == 0
    assert f"dinoseg runs resume {run_dir.name}" in capsys.readouterr().out
    assert main(["runs", "resume", run_dir.name, "--wait"]) == 0
    assert read_status(run_dir)["state"] == "completed"
    resumed = [r["step"] for r in read_log(run_dir) if r["kind"] == "resume"]
    assert resumed == [stop[0]["step"]]
    assert json.loads((run_dir / "metrics.json").read_text())["step"] == 150


def test_one_image_per_class_is_warned_before_the_run(env, capsys):
    from PIL import Image

    for cls in ("ant", "bee", "cat"):
        (env / "tiny" / cls).mkdir(parents=True)
        Image.new("RGB", (24, 24), (40 * len("ant" + cls), 0, 0)).save(env / "tiny" / cls / "1.png")
    Image.new("RGB", (24, 24), (9, 9, 9)).save(env / "tiny" / "cat" / "2.png")
    code = main(["train", "spec.yaml", "--dry-run", "--set", "data.root=tiny", "data.boxes="])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning: 2 of 3 classes have no validation image ('ant', 'bee')" in captured.err
    assert "# n_val: 1" in captured.out

    code = main(["train", "spec.yaml", "--dry-run", "--set", "data.root=tiny", "data.boxes=",
                 "data.val_fraction=0"])
    captured = capsys.readouterr()
    assert code == 0 and "warning: no validation images" in captured.err


def test_print_defaults_follows_the_job(capsys):
    assert main(["train", "--print-defaults"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["job"] == "classifier"
    assert main(["train", "--print-defaults", "--set", "job=fgvc"]) == 0
    fgvc = yaml.safe_load(capsys.readouterr().out)
    assert fgvc["job"] == "fgvc" and "ielt" in fgvc
    assert main(["train", "--print-defaults", "--set", "job=dino"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["job"] == "dino"
