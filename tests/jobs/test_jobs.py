"""Job framework: specs, overrides, the run log, run folders, runner checks, SLURM requeue."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from headless.jobs import local_runners, runners, runs, slurm_runner
from headless.jobs.runlog import (
    Curves,
    LogTail,
    RunLog,
    effective_state,
    read_log,
    read_status,
    write_status,
)
from headless.jobs.spec import (
    SpecError,
    apply_overrides,
    build_spec,
    derived_gamma,
    load_spec,
    lr_at,
    save_spec,
)

# ------------------------------------------------------------------------------------------------
# specs


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    spec = build_spec({"data": {"root": "/data/cub"}}, ["opt.lr=0.01", "crop.scale=[0.2, 1.0]"])
    assert spec.opt.lr == 0.01 and spec.crop.scale == (0.2, 1.0)
    assert spec.model.type == "resnet50" and spec.data.root == "/data/cub"
    path = save_spec(spec, tmp_path / "config.yaml")
    again = load_spec(path)
    assert again == spec


def test_typo_in_yaml_names_the_field_and_suggests(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("data:\n  root: /x\nopt:\n  lrr: 0.1\n")
    with pytest.raises(SpecError) as err:
        load_spec(p)
    msg = str(err.value)
    assert "opt.lrr: unknown field" in msg and "did you mean 'opt.lr'" in msg
    assert str(p) in msg


def test_typo_at_top_level_and_in_override():
    with pytest.raises(SpecError, match=r"num_epoch: unknown field \(did you mean 'num_epochs'"):
        build_spec({"num_epoch": 3})
    with pytest.raises(SpecError, match=r"model\.tpye: unknown field \(did you mean 'model\.type'"):
        build_spec({}, ["model.tpye=resnet18"])


def test_bad_values_name_the_field():
    with pytest.raises(SpecError, match=r"data\.batch_size: .*integer.*'abc'"):
        build_spec({}, ["data.batch_size=abc"])
    with pytest.raises(SpecError, match=r"opt\.type: .*'sgd', 'adam' or 'adamw'"):
        build_spec({}, ["opt.type=rmsprop"])
    with pytest.raises(SpecError, match=r"crop\.scale: .*0 < low <= high"):
        build_spec({}, ["crop.scale=[0.9, 0.1]"])
    with pytest.raises(SpecError, match="needs boxes"):
        build_spec({}, ["crop.type=localized"])
    with pytest.raises(SpecError, match="device must be"):
        build_spec({}, ["device=tpu"])


def test_overrides_parse_yaml_values_and_refuse_bad_paths():
    out = apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]", "d=null", "e.f.g=true", "a.b=2.5"])
    assert out == {"a": {"b": 2.5, "c": [1, 2]}, "d": None, "e": {"f": {"g": True}}}
    with pytest.raises(SpecError, match="expected key=value"):
        apply_overrides({}, ["opt.lr"])
    with pytest.raises(SpecError, match="seed is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=1"])


def test_non_mapping_yaml_is_refused(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="mapping of fields"):
        load_spec(p)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------------------
# learning-rate schedule


def test_gamma_is_derived_from_the_target_lr():
    assert derived_gamma(0.1, 0.001, 2) == pytest.approx(0.1)
    spec = build_spec({}, ["opt.scheduler=step", "opt.lr=0.1", "opt.target_lr=0.001",
                           "opt.step_size=3"])
    spe, total = 10, 90  # 9 epochs, decays after epochs 3 and 6
    assert lr_at(spec.opt, 0, total, spe) == pytest.approx(0.1)
    assert lr_at(spec.opt, 29, total, spe) == pytest.approx(0.1)
    assert lr_at(spec.opt, 30, total, spe) == pytest.approx(0.01)
    assert lr_at(spec.opt, total - 1, total, spe) == pytest.approx(0.001)  # reaches the target
    given = build_spec({}, ["opt.scheduler=step", "opt.gamma=0.5", "opt.step_size=1"])
    assert lr_at(given.opt, 25, total, spe) == pytest.approx(given.opt.lr * 0.25)


def test_cosine_with_warmup_and_target():
    spec = build_spec({}, ["opt.lr=1.0", "opt.target_lr=0.1", "opt.warmup_epochs=1"])
    spe, total = 10, 110
    assert lr_at(spec.opt, 0, total, spe) == pytest.approx(0.1)  # warm-up step 1 of 10
    assert lr_at(spec.opt, 4, total, spe) == pytest.approx(0.5)
    assert lr_at(spec.opt, 10, total, spe) == pytest.approx(1.0)
    mid = 10 + 50
    assert lr_at(spec.opt, mid, total, spe) == pytest.approx(0.1 + 0.9 * 0.5)
    end = lr_at(spec.opt, total - 1, total, spe)
    assert 0.1 < end < 0.1 + 0.9 * (1 + math.cos(math.pi * 99 / 100)) / 2 + 1e-9


# ------------------------------------------------------------------------------------------------
# run log and status


def test_log_tail_reads_whole_lines_only(tmp_path):
    log = RunLog(tmp_path)
    log.append("train", step=1, loss=float("nan"))
    tail = LogTail(tmp_path / "log.jsonl")
    first = tail.read_new()
    assert [r["step"] for r in first] == [1] and first[0]["loss"] is None  # NaN is not JSON
    with open(tmp_path / "log.jsonl", "a") as fh:
        fh.write('{"kind": "train", "st')  # a writer caught mid-line
    assert tail.read_new() == []
    with open(tmp_path / "log.jsonl", "a") as fh:
        fh.write('ep": 2}\nnot json\n')
    assert [r["step"] for r in tail.read_new()] == [2]
    (tmp_path / "log.jsonl").write_text('{"kind": "start", "total_steps": 5}\n')
    assert tail.read_new()[0]["total_steps"] == 5 and tail.reset


def test_curves_drop_steps_redone_after_resume():
    c = Curves()
    c.add([{"kind": "start", "total_steps": 10}]
          + [{"kind": "train", "step": s, "loss": 1.0 / s, "acc1": 0.1} for s in range(1, 7)]
          + [{"kind": "eval", "step": 5, "acc1": 0.5}])
    c.add([{"kind": "resume", "step": 4}, {"kind": "train", "step": 5, "loss": 9.0}])
    assert c.train_step == [1, 2, 3, 4, 5] and c.train_loss[-1] == 9.0
    assert c.eval_step == [] and c.total_steps == 10


def test_status_merges_and_dead_processes_are_detected(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    import socket

    write_status(tmp_path, state="running", runner="local", pid=proc.pid,
                 host=socket.gethostname())
    write_status(tmp_path, step=3)
    status = read_status(tmp_path)
    assert status["state"] == "running" and status["step"] == 3
    assert effective_state(status) == "dead"
    write_status(tmp_path, pid=os.getpid())
    assert effective_state(read_status(tmp_path)) == "running"


# ------------------------------------------------------------------------------------------------
# run folders


def test_run_folders_are_created_found_and_listed(tmp_path, monkeypatch):
    # both folders in the same second (as on a fast machine): the second one gets "-2"
    monkeypatch.setattr(runs.time, "strftime", lambda fmt, *a: "20261122-101500")
    spec = build_spec({"name": "cub birds!"})
    a = runs.new_run_dir(spec, tmp_path)
    b = runs.new_run_dir(spec, tmp_path)
    assert a != b and a.name.endswith("classifier-cub-birds") and b.name.endswith("-2")
    assert load_spec(a / "config.yaml") == spec
    assert read_status(a)["state"] == "created"
    assert runs.find_run(a.name, tmp_path) == a
    assert runs.find_run(str(a)) == a
    assert runs.find_run("last", tmp_path) == b
    with pytest.raises(runs.RunError, match="ambiguous"):
        runs.find_run(a.name[:8], tmp_path)
    with pytest.raises(runs.RunError, match="no run 'nope'"):
        runs.find_run("nope", tmp_path)
    names = [i.name for i in runs.list_runs(tmp_path)]
    assert names == [a.name, b.name]


def test_runs_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DINOSEG_RUNS", str(tmp_path / "elsewhere"))
    assert runs.runs_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("DINOSEG_RUNS")
    assert runs.runs_root() == runs.Path("~/.dinoseg/runs").expanduser()


def test_cancel_without_a_process_marks_cancelled(tmp_path):
    run_dir = runs.new_run_dir(build_spec({}), tmp_path)
    msg = runs.cancel_run(run_dir)
    assert "no process was running" in msg and read_status(run_dir)["state"] == "cancelled"
    assert "already ended" in runs.cancel_run(run_dir)


# ------------------------------------------------------------------------------------------------
# runner checks


def test_slurm_without_sbatch_or_submitit_is_refused_clearly(monkeypatch):
    spec = build_spec({})
    monkeypatch.setattr(slurm_runner.shutil, "which", lambda name: None)
    with pytest.raises(runners.RunnerUnavailable, match="sbatch was not found on PATH"):
        runners.SlurmRunner().check(spec)
    real = slurm_runner.importlib.util.find_spec
    monkeypatch.setattr(slurm_runner.importlib.util, "find_spec",
                        lambda name: None if name == "submitit" else real(name))
    with pytest.raises(runners.RunnerUnavailable, match="pip install submitit"):
        runners.SlurmRunner().check(spec)


def test_torchrun_and_cuda_without_gpu_are_refused_clearly(monkeypatch):
    monkeypatch.setattr(local_runners, "_cuda_count", lambda: 0)
    with pytest.raises(runners.RunnerUnavailable, match="no CUDA GPU is available here"):
        runners.TorchrunRunner().check(build_spec({}))
    runners.TorchrunRunner().check(build_spec({}, ["device=cpu"]))  # gloo on CPU is fine
    with pytest.raises(runners.RunnerUnavailable, match="no CUDA GPU"):
        runners.LocalRunner().check(build_spec({}, ["device=cuda"]))
    monkeypatch.setattr(local_runners, "_cuda_count", lambda: 2)
    with pytest.raises(runners.RunnerUnavailable, match="nproc_per_node=4 but this node has 2"):
        runners.TorchrunRunner().check(build_spec({}, ["torchrun.nproc_per_node=4"]))
    with pytest.raises(runners.RunnerUnavailable, match="cuda:3.*has 2 GPU"):
        runners.LocalRunner().check(build_spec({}, ["device=cuda:3"]))
    real = local_runners.importlib.util.find_spec
    monkeypatch.setattr(local_runners.importlib.util, "find_spec",
                        lambda name: None if name == "torch.distributed.run" else real(name))
    with pytest.raises(runners.RunnerUnavailable, match="torchrun is missing"):
        runners.TorchrunRunner().check(build_spec({}))


def test_unknown_runner_and_availability_table(monkeypatch):
    with pytest.raises(runners.RunnerUnavailable, match="unknown runner 'k8s'"):
        runners.get_runner("k8s")
    monkeypatch.setattr(slurm_runner.shutil, "which", lambda name: None)
    table = runners.available_runners(build_spec({}, ["device=cpu"]))
    assert table["local"] is None and table["torchrun"] is None
    assert "sbatch" in table["slurm"]


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pt").write_bytes(b"")
    spec = build_spec({"data": {"root": "ds", "boxes": "b.json"},
                       "model": {"weights": "w.pt"}})
    out = runners.resolve_spec_paths(spec)
    assert out.data.root == str(tmp_path / "ds") and out.data.boxes == str(tmp_path / "b.json")
    assert out.model.weights == str(tmp_path / "w.pt")
    kw = runners.resolve_spec_paths(build_spec({}, ["model.weights=imagenet"]))
    assert kw.model.weights == "imagenet"  # a keyword, not a file here


# ------------------------------------------------------------------------------------------------
# the SLURM path through submitit's local executor: USR2 -> checkpoint -> requeue -> resume


@pytest.mark.slow
def test_slurm_job_checkpoints_and_requeues_on_usr2(tmp_path):
    from headless.train.synthetic import make_shapes_dataset

    make_shapes_dataset(tmp_path / "ds", n_per_class=6, size=24)
    spec = build_spec({
        "data": {"root": str(tmp_path / "ds"), "image_size": 24, "batch_size": 4,
                 "num_workers": 0},
        "model": {"type": "test_resnet_tiny"}, "max_steps": 80, "cpu_threads": 1,
        "augment": {"enabled": False}, "log": {"interval": 1},
        "checkpoint": {"every_steps": 1000},
    })
    handle = runners.launch(spec, runner=runners.SlurmRunner(cluster="local"),
                            runs_root=tmp_path / "runs")
    tail = LogTail(handle.run_dir / "log.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(r["kind"] == "train" for r in tail.read_new()):
            break
        time.sleep(0.05)
    # what SLURM sends the job's tasks before a time limit or a pre-emption
    os.kill(int(read_status(handle.run_dir)["worker_pid"]), signal.SIGUSR2)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and read_status(handle.run_dir).get("state") != "completed":
        time.sleep(0.2)
    records = read_log(handle.run_dir)
    stops = [r for r in records if r["kind"] == "checkpoint" and r.get("reason") == "stop"]
    ends = [r["state"] for r in records if r["kind"] == "end"]
    resumes = [r for r in records if r["kind"] == "resume"]
    assert stops and 0 < stops[0]["step"] < 80
    assert ends == ["queued", "completed"]
    assert resumes and resumes[0]["step"] == stops[0]["step"]
    assert read_status(handle.run_dir)["slurm_job_id"] == str(handle.job.job_id)
    metrics = json.loads((handle.run_dir / "metrics.json").read_text())
    assert metrics["step"] == 80


def test_path_markers_work_for_any_job_spec(tmp_path, monkeypatch):
    """A new job type marks its path fields; the runners resolve them without knowing the job."""
    from pydantic import BaseModel, Field

    from headless.jobs.spec import PATH, PATH_OR_KEYWORD

    class Inner(BaseModel):
        folder: str = Field("", json_schema_extra=PATH)
        label: str = "plain"

    class OtherSpec(BaseModel):
        job: str = "other"
        pretext: Inner = Inner()
        weights: str = Field("official", json_schema_extra=PATH_OR_KEYWORD)

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.pth").write_bytes(b"")
    out = runners.resolve_spec_paths(OtherSpec(pretext=Inner(folder="imgs", label="x"),
                                               weights="t.pth"))
    assert out.pretext.folder == str(tmp_path / "imgs") and out.pretext.label == "x"
    assert out.weights == str(tmp_path / "t.pth")
    assert runners.resolve_spec_paths(OtherSpec()).weights == "official"


def test_a_job_spec_can_be_registered_by_reference(monkeypatch):
    from headless.jobs import spec as spec_mod

    monkeypatch.setitem(spec_mod.SPEC_TYPES, "again", "headless.jobs.spec:ClassifierSpec")
    assert spec_mod.default_spec("again") == spec_mod.default_spec("classifier")
