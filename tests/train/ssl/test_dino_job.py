"""The ``dino`` job: spec and bad input before any work, exact resume, the exported teacher
loaded as a backbone by the features code."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headless.jobs import get_job
from headless.jobs.runlog import read_log
from headless.jobs.spec import SpecError, build_spec
from headless.train.data.errors import DatasetError


def _images(folder: Path, n: int = 12, size: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), np.uint8)).save(
            folder / f"{i:02d}.png")
    return folder


def _cfg(pretext: Path, **extra) -> dict:
    cfg = {"job": "dino", "num_epochs": 2, "seed": 3, "cpu_threads": 1,
           "data": {"pretext": str(pretext), "batch_size": 4, "num_workers": 0},
           "crops": {"global_size": 32, "local_size": 16, "n_local": 1},
           "model": {"arch": "test_vit", "out_dim": 32, "head_hidden_dim": 32,
                     "head_bottleneck_dim": 16},
           "opt": {"warmup_epochs": 1, "warmup_teacher_temp_epochs": 1},
           "log": {"interval": 1}, "checkpoint": {"every_steps": 2, "keep": 10}}
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


@pytest.fixture(scope="module")
def pretext(tmp_path_factory) -> Path:
    return _images(tmp_path_factory.mktemp("dino") / "pretext")


def test_spec_defaults_recipes_and_unknown_fields(pretext):
    vit = build_spec({"job": "dino"})
    assert vit.model.out_dim == 65536 and vit.crops.n_local == 8
    r = vit.recipe()
    assert (r["optimizer"], r["lr"], r["weight_decay"], r["weight_decay_end"]) == \
        ("adamw", 0.0005, 0.04, 0.4)
    assert r["global_scale"] == (0.4, 1.0) and r["local_scale"] == (0.05, 0.4)
    rn = build_spec({"job": "dino", "model": {"arch": "resnet50"}}).recipe()
    assert (rn["optimizer"], rn["lr"], rn["weight_decay"], rn["weight_decay_end"]) == \
        ("sgd", 0.03, 1e-4, 1e-4)
    assert rn["global_scale"] == (0.14, 1.0) and rn["local_scale"] == (0.05, 0.14)
    with pytest.raises(SpecError, match="did you mean 'opt.teacher_temp'"):
        build_spec({"job": "dino", "opt": {"teacher_tmp": 0.05}})


def test_bad_pretext_folders_are_refused_before_work(tmp_path):
    job = get_job("dino")
    with pytest.raises(DatasetError, match="does not exist"):
        job.preflight(build_spec(_cfg(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found in pretext folder"):
        job.preflight(build_spec(_cfg(tmp_path / "empty")))
    bad = _images(tmp_path / "bad", n=3)
    (bad / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"1 unreadable image\(s\).*broken\.jpg"):
        job.preflight(build_spec(_cfg(bad)))
    small = _images(tmp_path / "small", n=3, size=10)
    with pytest.raises(DatasetError, match=r"smaller than the local crop \(16 px"):
        job.preflight(build_spec(_cfg(small)))
    with pytest.raises(ValueError, match="not a multiple of the ViT patch"):
        job.preflight(build_spec(_cfg(small, crops={"global_size": 30})))


def test_preflight_summary(pretext):
    out = get_job("dino").preflight(build_spec(_cfg(pretext)))
    assert out["pretext_images"] == 12 and out["optimizer"] == "adamw"


def _run(spec, run_dir: Path) -> Path:
    from headless.train.ssl.job import run

    run_dir.mkdir(parents=True, exist_ok=True)
    assert run(spec, run_dir) == "completed"
    return run_dir


def test_interrupted_run_resumes_to_the_same_teacher_and_student(pretext, tmp_path):
    spec = build_spec(_cfg(pretext))
    a = _run(spec, tmp_path / "a")
    logs = read_log(a)
    start = next(r for r in logs if r["kind"] == "start")
    assert start["total_steps"] == 6 and start["crops"] == 3
    train = [r for r in logs if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert train[0]["lr"] == 0.0 and train[0]["teacher_temp"] == pytest.approx(0.04)
    assert train[-1]["teacher_temp"] == pytest.approx(0.07)
    # a kill right after the step-2 checkpoint: only that file survives
    b = tmp_path / "b"
    (b / "checkpoints").mkdir(parents=True)
    shutil.copy(a / "checkpoints" / "step_00000002.pt", b / "checkpoints" / "last.pt")
    _run(spec, b)
    assert [r["step"] for r in read_log(b) if r["kind"] == "resume"] == [2]
    ca = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    assert ca["step"] == cb["step"] == 6
    for part in ("model", "teacher", "dino_loss"):
        assert ca[part].keys() == cb[part].keys()
        for k in ca[part]:
            assert torch.equal(ca[part][k], cb[part][k]), (part, k)
    # the teacher moved away from its initialisation and differs from the student
    init = torch.load(a / "checkpoints" / "step_00000002.pt", weights_only=True)
    cls = "backbone.cls_token"
    assert not torch.equal(init["teacher"][cls], ca["teacher"][cls])
    assert not torch.equal(ca["model"][cls], ca["teacher"][cls])


def test_exported_teacher_loads_as_a_features_backbone(pretext, tmp_path):
    from headless.features.backbones import load_backbone
    from headless.progress import run as drive
    from headless.train.ssl.extract import extract_features, open_model

    run_dir = _run(build_spec(_cfg(pretext, num_epochs=1)), tmp_path / "r")
    meta = (run_dir / "export.json").read_text()
    assert '"features_backbone": "test_dino_tiny16"' in meta
    teacher = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["teacher"]
    for weights in (run_dir / "teacher_backbone.pth", run_dir / "checkpoints" / "last.pt"):
        bb = load_backbone("test_dino_tiny16", weights=str(weights))
        sd = bb.model.state_dict()
        for k, v in teacher.items():
            if k.startswith("backbone."):
                assert torch.equal(sd[k[len("backbone."):]], v), k
    # the run folder as weights: backbone read from export.json, same features
    fm = open_model("auto", str(run_dir), "cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fm.model(x), bb.model(x), atol=1e-6)
    feats = drive(extract_features(fm, sorted(pretext.glob("*.png"))[:3], size=32,
                                   cache=tmp_path / "cache"))
    again = drive(extract_features(fm, sorted(pretext.glob("*.png"))[:3], size=32,
                                   cache=tmp_path / "cache"))
    assert feats.shape == (3, 48) and np.array_equal(feats, again)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3


def test_run_folder_is_a_weights_choice_of_every_dock_and_command(pretext, tmp_path):
    """``--weights RUN_DIR`` through load_backbone (features, boxes, scribbles, SAM choice)."""
    from headless.cli import main as cli
    from headless.features.backbones import WeightsError, load_backbone

    run_dir = _run(build_spec(_cfg(pretext, num_epochs=1)), tmp_path / "r")
    by_dir = load_backbone("test_dino_tiny16", weights=str(run_dir))
    by_file = load_backbone("test_dino_tiny16", weights=str(run_dir / "teacher_backbone.pth"))
    assert by_dir.weights_label == "dino run (r)"
    for (k, a), b in zip(by_dir.model.state_dict().items(), by_file.model.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(WeightsError, match="pre-trained as test_dino_tiny16, not dino_vits16"):
        load_backbone("dino_vits16", weights=str(run_dir))
    with pytest.raises(WeightsError, match="not a finished dino run"):
        load_backbone("test_dino_tiny16", weights=str(tmp_path))
    out = tmp_path / "boxes.json"
    assert cli(["boxes", str(pretext), "--method", "dino", "--backbone", "test_dino_tiny16",
                "--weights", str(run_dir), "--size", "32", "--out", str(out), "--quiet"]) == 0
    assert '"images"' in out.read_text()


@pytest.mark.parametrize("patch", [16, 8])
def test_vit_tiny_runs_load_as_registry_backbones(tmp_path, patch):
    """DINO's ViT-tiny (16 and 8 px patches) has a backbone entry that loads its teacher."""
    import json

    from headless.features.backbones import get_spec, load_backbone
    from headless.train.ssl.models import build_backbone, features_backbone_name

    name = features_backbone_name("vit_tiny", patch)
    assert name == f"dino_vitt{patch}" and get_spec(name).patch_size == patch
    torch.manual_seed(3)
    net = build_backbone("vit_tiny", patch)
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("head.")},
               tmp_path / "teacher_backbone.pth")
    (tmp_path / "export.json").write_text(json.dumps(
        {"arch": f"vit_tiny/{patch}", "features_backbone": name,
         "weights": "teacher_backbone.pth"}))
    bb = load_backbone(name, weights=str(tmp_path))
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(net.forward_features(x), bb.model.forward_features(x))


def test_an_unset_pretext_folder_is_named_not_the_working_folder(tmp_path, monkeypatch):
    from headless.train.ssl.data import DatasetError, list_pretext

    (tmp_path / "stray.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)  # "" would be "." and find stray.png
    with pytest.raises(DatasetError, match=r"no pretext folder given \(set data.pretext\)"):
        list_pretext("")
