"""The Train dock's plain-Python part: form values -> spec, following a run folder's log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from headless.jobs.spec import build_spec as engine_build_spec
from napari_dinoseg._widgets.train.controller import (
    TrainController,
    TrainForm,
    build_spec,
    confusion_cells,
    confusion_title,
    runner_note,
    runs_root,
    spec_dict,
)


def test_spec_dict_from_plain_values():
    form = TrainForm(data_root=" /data/ds ", boxes="  ", model="test_resnet_tiny",
                     weights=" imagenet ", crop="localized", crop_thr=0.8, target_lr=0.0,
                     name="", device="cpu", num_epochs=2, log_interval=1)
    assert spec_dict(form) == {
        "job": "classifier", "name": None, "seed": 0, "device": "cpu", "num_epochs": 2,
        "data": {"root": "/data/ds", "boxes": None, "image_size": 224, "batch_size": 32,
                 "val_fraction": 0.2, "num_workers": 4},
        "crop": {"type": "localized", "thr": 0.8, "temperature": 1.0},
        "augment": {"enabled": True, "p": 0.5, "augmix": False},
        "model": {"type": "test_resnet_tiny", "weights": "imagenet", "freeze_backbone": False,
                  "train_cls": False, "ema_step": 0},
        "opt": {"type": "sgd", "lr": 0.1, "scheduler": "cosine", "target_lr": None,
                "label_smoothing": 0.1},
        "log": {"interval": 1},
    }
    d = spec_dict(TrainForm(name=" run-a ", target_lr=1e-4, boxes="b.json"))
    assert d["name"] == "run-a" and d["opt"]["target_lr"] == 1e-4 and d["data"]["boxes"] == "b.json"
    assert d["model"]["weights"] is None  # empty: the model's default weights


def test_build_spec_is_the_engine_spec(tmp_path):
    form = TrainForm(data_root=str(tmp_path), model="test_resnet_tiny", image_size=24)
    assert build_spec(form) == engine_build_spec(spec_dict(form))
    with pytest.raises(ValueError):
        build_spec(TrainForm(crop="localized"))  # a localized crop needs boxes
    assert runs_root(f"  {tmp_path}  ") == tmp_path


def _write(run_dir: Path, records: list[dict], **status) -> None:
    from headless.jobs.runs import CONFIG_NAME

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_NAME).write_text("job: classifier\n")
    with open(run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    (run_dir / "status.json").write_text(json.dumps(status))


def test_following_a_run_from_its_log(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    # a run on another host: its process is not looked for here
    _write(run_dir, [{"kind": "start", "total_steps": 10},
                     {"kind": "train", "step": 1, "loss": 2.0, "acc1": 0.1},
                     {"kind": "train", "step": 3, "loss": 1.5, "acc1": 0.3},
                     {"kind": "eval", "step": 3, "acc1": 0.5, "acc5": 1.0, "loss": 1.4}],
           state="running", runner="local", host="elsewhere", created=1.0)
    ctl = TrainController()
    assert ctl.poll() is None and ctl.busy_message() is None
    ctl.follow(run_dir)
    records = ctl.poll()
    assert [r["kind"] for r in records] == ["start", "train", "train", "eval"]
    assert ctl.state == "running" and ctl.active and ctl.can_cancel() and not ctl.can_resume()
    assert ctl.progress() == (10, 3)
    assert ctl.status_text() == "r1: running · step 3/10 · loss 1.5000 · val acc@1 50.0%"
    assert "still running" in ctl.busy_message()
    assert ctl.poll() == []  # nothing new

    _write(run_dir, [{"kind": "error", "message": "CUDA out of memory"},
                     {"kind": "end", "state": "failed"}], state="failed", runner="local",
           created=1.0)
    assert [r["kind"] for r in ctl.poll()] == ["error", "end"]
    assert ctl.state == "failed" and not ctl.active and ctl.can_resume()
    assert ctl.status_text().endswith("· CUDA out of memory")
    assert ctl.busy_message() is None

    # another run: state and curves start again
    other = tmp_path / "runs" / "r2"
    _write(other, [{"kind": "stage", "stage": "attention maps", "done": 2, "total": 8}],
           state="queued", runner="local", host="elsewhere", created=2.0)
    ctl.follow(other)
    ctl.poll()
    assert ctl.progress() == (8, 2) and ctl.curves.train_step == []
    assert ctl.status_text() == "r2: queued · attention maps 2/8"
    assert [label for label, _ in TrainController.list_runs(tmp_path / "runs")] == [
        "r2 (queued)", "r1 (failed)"]
    assert TrainController.list_runs(tmp_path / "nothing here") == []


def test_confusion_cells_and_title():
    cells = confusion_cells([[2, 0], [1, 1]])
    assert cells == [[("2", True, 230), ("0", False, 0)], [("1", False, 130), ("1", True, 130)]]
    assert confusion_cells([[0, 0]]) == [[("0", True, 0), ("0", False, 0)]]
    assert confusion_title({"step": 6, "acc1": 0.5}) == (
        "confusion matrix at step 6 (rows: true, columns: predicted, acc@1 50.0%)")
    assert confusion_title({"step": 6, "acc1": math.nan}) == (
        "confusion matrix at step 6 (rows: true, columns: predicted)")


def test_runner_notes_and_refusals():
    assert runner_note("local") == ""
    assert "GPU" in runner_note("torchrun")
    ctl = TrainController()
    with pytest.raises(ValueError, match="no run to cancel"):
        ctl.cancel()
    with pytest.raises(ValueError, match="follow it first"):
        ctl.resume()
    assert ctl.confusion() is None


def test_errors_use_the_form_labels_not_spec_fields(tmp_path):
    from headless.progress import run
    from napari_dinoseg._widgets.train.controller import (
        TrainForm,
        build_spec,
        form_words,
        launch_job,
    )

    assert form_words("data.root is empty; data.rooted stays") == (
        "'dataset folder' is empty; data.rooted stays")
    assert form_words("/x/data.root/y") == "/x/data.root/y"  # not inside a path
    spec = build_spec(TrainForm(job="classifier", data_root=""))
    with pytest.raises(Exception) as err:
        run(launch_job(spec, "local", tmp_path / "runs"))
    assert "'dataset folder' is empty" in str(err.value) and "data.root" not in str(err.value)


def test_fgvc_and_dino_forms_are_the_engine_specs(tmp_path):
    from napari_dinoseg._widgets.train.job_forms import DinoForm, FgvcForm

    # untouched forms: the engine's defaults (GPU-sized; the user edits them)
    assert build_spec(DinoForm(pretext=f" {tmp_path} ")) == engine_build_spec(
        {"job": "dino", "data": {"pretext": str(tmp_path)}})
    assert build_spec(FgvcForm(data_root=str(tmp_path))) == engine_build_spec(
        {"job": "fgvc", "data": {"root": str(tmp_path)}})
    d = spec_dict(DinoForm(pretext="p", optimizer="", lr=0.0, knn_root=" ", init_weights=""))
    assert d["job"] == "dino" and d["opt"]["optimizer"] is None and d["opt"]["lr"] is None
    assert d["data"]["knn_root"] is None and d["model"]["init_weights"] is None
    f = spec_dict(FgvcForm(data_root="r", sub_batch=0, lr=0.0, clip_grad=0.0, dilations="1,2"))
    assert f["data"]["sub_batch"] is None and f["opt"]["lr"] is None
    assert f["opt"]["clip_grad"] is None and f["ielt"]["dilations"] == [1, 2]
    # what the engine cannot see: an empty folder would be read as the current one
    with pytest.raises(ValueError, match="'pretext folder' is empty"):
        build_spec(DinoForm(pretext="  "))
    with pytest.raises(ValueError, match="'dataset folder' is empty"):
        build_spec(FgvcForm())
    with pytest.raises(ValueError, match=r"'local crops': .*greater than or equal to 0"):
        build_spec(DinoForm(pretext="p", n_local=-1))


def test_one_line():
    from napari_dinoseg._widgets.train.controller import one_line

    assert one_line(ValueError("a\n  b;\tc ")) == "a b; c"


def test_following_a_dino_run_loss_and_knn(tmp_path):
    from headless.jobs.runs import CONFIG_NAME
    from napari_dinoseg._widgets.train.job_forms import knn_points, run_job

    run_dir = tmp_path / "runs" / "d1"
    _write(run_dir, [{"kind": "start", "total_steps": 4},
                     {"kind": "train", "step": 1, "loss": 9.0, "lr": 0.1},
                     {"kind": "train", "step": 2, "loss": 8.5, "lr": 0.1},
                     {"kind": "eval", "step": 2, "knn20_top1": 40.0, "knn10_top1": 50.0,
                      "knn10_top5": 90.0}],
           state="running", runner="local", host="elsewhere", created=1.0)
    (run_dir / CONFIG_NAME).write_text("job: dino\n")
    assert run_job(run_dir) == "dino" and run_job(tmp_path / "none") is None
    ctl = TrainController()
    ctl.follow(run_dir)
    ctl.poll()
    assert ctl.job == "dino" and ctl.knn == [(2, 0.5)]  # k=10, percent -> share
    assert ctl.status_text() == "d1: running · step 2/4 · loss 8.5000 · k-NN top-1 50.0%"
    _write(run_dir, [{"kind": "resume", "step": 1},
                     {"kind": "train", "step": 2, "loss": 8.4}], state="running",
           runner="local", host="elsewhere", created=1.0)
    ctl.poll()
    assert ctl.knn == [] and ctl.curves.train_step == [1, 2]  # the resumed steps once
    assert knn_points([{"kind": "train", "knn10_top1": 1.0}]) == []
