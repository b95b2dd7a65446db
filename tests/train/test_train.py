"""The classifier job on a planted dataset: data checks, determinism, learning, exact resume."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from headless.boxes import Box, BoxSet, write_coco
from headless.jobs.runlog import LogTail, RunLog, read_log, read_status
from headless.jobs.runners import launch, resolve_spec_paths
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec, lr_at
from headless.jobs.worker import execute
from headless.train import classifier
from headless.train.classifier.attention_lookup import attention_lookup
from headless.train.classifier.job import preflight
from headless.train.classifier.runtime import DistInfo
from headless.train.data import (
    ClassifierDataset,
    DatasetError,
    EpochBatches,
    make_split,
    match_boxes,
    plan_data,
    read_box_table,
    scan_image_folder,
    train_transform,
)
from headless.train.evaluate import EvalResult, evaluate, topk_correct
from headless.train.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root, n_per_class=12, size=32, seed=1)
    return root


def tiny_cfg(root: Path, **extra) -> dict:
    cfg = {
        "data": {"root": str(root), "boxes": str(root / "boxes.json"), "image_size": 32,
                 "batch_size": 8, "num_workers": 0, "val_fraction": 0.25},
        "model": {"type": "test_resnet_tiny"},
        "opt": {"lr": 0.05, "label_smoothing": 0.0},
        "augment": {"enabled": False},
        "num_epochs": 3, "cpu_threads": 1, "seed": 7,
        "log": {"interval": 1}, "checkpoint": {"every_steps": 4},
    }
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


# ------------------------------------------------------------------------------------------------
# data: folders, splits, boxes, bad input


def test_image_folder_scan_and_stratified_split(shapes):
    index = scan_image_folder(shapes)
    assert index.classes == ["blue_triangle", "green_square", "red_disc"]
    assert index.counts() == dict.fromkeys(index.classes, 12)
    spec = build_spec(tiny_cfg(shapes))
    split = make_split(spec.data, spec.seed)
    assert len(split.val) == 9 and len(split.train) == 27
    for label in range(3):  # 25 % of every class
        assert sum(1 for _, y in split.val if y == label) == 3
    assert not {p for p, _ in split.val} & {p for p, _ in split.train}
    assert make_split(spec.data, spec.seed).val == split.val  # same on every resume / rank


def test_train_val_layout_and_val_root(tmp_path):
    make_shapes_dataset(tmp_path / "d" / "train", n_per_class=3, size=16)
    make_shapes_dataset(tmp_path / "d" / "val", n_per_class=2, size=16, seed=5)
    spec = build_spec({"data": {"root": str(tmp_path / "d")}})
    split = make_split(spec.data, 0)
    assert split.how == "train/val" and len(split.train) == 9 and len(split.val) == 6
    make_shapes_dataset(tmp_path / "v", n_per_class=1, n_classes=4, size=16)
    bad = build_spec({"data": {"root": str(tmp_path / "d" / "train"),
                               "val_root": str(tmp_path / "v")}})
    with pytest.raises(DatasetError, match="classes that the training set lacks: yellow_cross"):
        make_split(bad.data, 0)


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found in"):
        scan_image_folder(tmp_path / "empty")
    make_shapes_dataset(tmp_path / "two", n_per_class=2, size=16)
    one = tmp_path / "one"
    (one / "cats").mkdir(parents=True)
    for p in (tmp_path / "two" / "red_disc").iterdir():
        p.rename(one / "cats" / p.name)
    with pytest.raises(DatasetError, match=r"only one class \('cats'\).*at least two"):
        scan_image_folder(one)
    with pytest.raises(DatasetError, match="no class sub-folders"):
        scan_image_folder(one / "cats")
    with pytest.raises(DatasetError, match="data.root is empty"):
        preflight(build_spec({}, ["model.type=test_resnet_tiny"]))


def test_boxes_match_by_relative_path_or_unique_name(shapes, tmp_path):
    spec = build_spec(tiny_cfg(shapes))
    plan = plan_data(spec)
    assert len(plan.boxes) == 36
    name = "red_disc/red_disc_004.png"
    truth = json.loads((shapes / "boxes.json").read_text())[name][0]
    assert plan.boxes[shapes / name][0][0] == Box.from_dict(truth)
    # a COCO export keyed by bare file names (what napari's writer stores)
    bs = BoxSet()
    bs.add("red_disc_004.png", [Box(1, 2, 11, 12, label="red_disc")], size=(64, 64))
    write_coco(tmp_path / "coco.json", bs)
    table = read_box_table(tmp_path / "coco.json")
    matched = match_boxes(plan.split.train + plan.split.val, plan.split.roots, table)
    (boxes, size), = matched.values()
    assert next(iter(matched)) == shapes / name and size == (64, 64)
    # boxes drawn on a 64 px version of a 32 px image are scaled to it
    ds = ClassifierDataset([(shapes / name, 2)], None, matched)
    assert ds.boxes_for(0, 32, 32).tolist() == [[0.5, 1.0, 5.5, 6.0]]


def test_boxes_for_images_not_in_the_dataset_are_refused(shapes, tmp_path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps({
        "red_disc/red_disc_000.png": [Box(0, 0, 5, 5).to_dict()],
        "zebra_001.png": [Box(0, 0, 5, 5).to_dict()],
    }))
    spec = build_spec(tiny_cfg(shapes, data={"boxes": str(p)}))
    with pytest.raises(DatasetError, match=r"boxes for 1 image\(s\) that are not in the dataset.*"
                                           r"zebra_001\.png"):
        preflight(spec)
    with pytest.raises(DatasetError, match="does not exist"):
        read_box_table(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not readable JSON"):
        read_box_table(tmp_path / "bad.json")


def test_model_checks_before_start(shapes, monkeypatch, tmp_path):
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from headless.features.backbones import WeightsError

    with pytest.raises(WeightsError, match=r"resnet50-.*\.pth"):
        preflight(build_spec(tiny_cfg(shapes, model={"type": "resnet50", "weights": "imagenet"})))
    with pytest.raises(classifier.ModelError, match="unknown model 'resnet5'"):
        preflight(build_spec(tiny_cfg(shapes, model={"type": "resnet5"})))
    vit = tiny_cfg(shapes, model={"type": "test_dinov2_tiny14_reg", "weights": "random"})
    with pytest.raises(classifier.ModelError, match="not a multiple of .*patch size 14 "
                                                    r"\(use 28\)"):
        preflight(build_spec(vit))
    with pytest.raises(WeightsError, match="no official weights"):
        preflight(build_spec(tiny_cfg(shapes, model={"type": "test_dinov2_tiny14_reg"},
                                      data={"image_size": 28})))


# ------------------------------------------------------------------------------------------------
# determinism of data


def test_epoch_batches_resume_and_shard_exactly():
    full = list(EpochBatches(50, 4, seed=3, epoch=2))
    assert len(full) == 12 and all(len(b) == 4 for b in full)
    assert list(EpochBatches(50, 4, seed=3, epoch=2, start=5)) == full[5:]
    assert list(EpochBatches(50, 4, seed=3, epoch=3)) != full
    r0 = list(EpochBatches(50, 2, seed=3, epoch=2, rank=0, world=2))
    r1 = list(EpochBatches(50, 2, seed=3, epoch=2, rank=1, world=2))
    assert len(r0) == 12
    for g, a, b in zip(full, r0, r1):
        assert sorted(a + b) == sorted(g) and not set(a) & set(b)
    assert [len(b) for b in EpochBatches(3, 8, seed=0, epoch=0)] == [3]  # smaller than a batch


def test_samples_are_keyed_by_seed_epoch_index(shapes):
    spec = build_spec(tiny_cfg(shapes, augment={"enabled": True, "p": 1.0}))
    plan = plan_data(spec)
    tf = train_transform(spec, (0.5,) * 3, (0.25,) * 3)
    ds = ClassifierDataset(plan.split.train, tf, plan.boxes, seed=spec.seed)
    a, la = ds[(0, 5)]
    torch.manual_seed(123)  # the global stream must not matter
    b, lb = ds[(0, 5)]
    c, _ = ds[(1, 5)]
    assert la == lb and torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    from torch.utils.data import DataLoader

    sampler = EpochBatches(len(ds), 4, seed=spec.seed, epoch=1)
    serial = [x for x, _ in DataLoader(ds, batch_sampler=sampler, num_workers=0)]
    forked = [x for x, _ in DataLoader(ds, batch_sampler=sampler, num_workers=2)]
    assert all(torch.equal(s, f) for s, f in zip(serial, forked))


def test_localized_crop_keeps_the_box_in_view(shapes):
    spec = build_spec(tiny_cfg(shapes, crop={"type": "localized", "thr": 1.0,
                                             "scale": [0.05, 0.3]}))
    plan = plan_data(spec)
    from torchvision.transforms import v2

    from headless.train.data import make_crop

    crop = make_crop(spec.crop, 32)
    ds = ClassifierDataset(plan.split.train, None, plan.boxes)
    for i in range(len(ds)):
        item = ds.sample(i)
        box = item["boxes"].clone()
        out = v2.Compose([crop])(item)
        # thr = 1: the whole box is inside the crop, so its resized box spans a positive area
        b = out["boxes"][0]
        assert (b[2] - b[0]) > 0 and (b[3] - b[1]) > 0
        assert box.shape == out["boxes"].shape


# ------------------------------------------------------------------------------------------------
# evaluation


def test_evaluate_counts_are_exact():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x[:, :, 0, 0]  # the "image" carries its own logits

    logits = torch.tensor([[3.0, 2, 1, 0, -1, -2], [0, 3, 2, 1, -1, -2], [0, 1, 2, 3, 4, 5],
                           [5, 4, 3, 2, 1, 0]])
    labels = torch.tensor([0, 2, 0, 1])
    images = logits[:, :, None, None]
    res = evaluate(Fixed(), [(images, labels)], 6, classes=list("abcdef"))
    assert res.confusion[0, 0] == 1 and res.confusion[2, 1] == 1 and res.confusion[0, 5] == 1
    assert res.confusion[1, 0] == 1 and res.n == 4 and res.acc1 == 0.25
    assert topk_correct(logits, labels, 5) == 3 and res.acc5 == 0.75
    assert res.per_class_recall()[:3] == [0.5, 0.0, 0.0] and res.per_class_recall()[3] is None
    assert EvalResult(np.zeros((2, 2), int)).acc1 != EvalResult(np.zeros((2, 2), int)).acc1  # nan


# ------------------------------------------------------------------------------------------------
# training


def _run_in_process(spec, root: Path) -> Path:
    spec = resolve_spec_paths(spec)
    run_dir = new_run_dir(spec, root)
    assert classifier.run(spec, run_dir) == "completed"
    return run_dir


def test_training_learns_the_planted_classes(shapes, tmp_path):
    spec = build_spec(tiny_cfg(shapes, num_epochs=6, model={"ema_step": 1, "ema_decay": 0.8},
                               log={"tensorboard": True}))
    run_dir = _run_in_process(spec, tmp_path)
    records = read_log(run_dir)
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:  # optional: said, not crashed
        assert any("tensorboard is not installed" in r.get("message", "") for r in records)
    else:
        assert any((run_dir / "tensorboard").iterdir())
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 18 and [r["step"] for r in train] == list(range(1, 19))
    first = np.mean([r["loss"] for r in train[:3]])
    last = np.mean([r["loss"] for r in train[-3:]])
    assert last < 0.7 * first  # the loss falls
    for r in train:  # the schedule the log reports is the spec's
        assert r["lr"] == pytest.approx(lr_at(spec.opt, r["step"] - 1, 18, 3))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["acc1"] > 0.6 and metrics["n"] == 9  # chance is 1/3
    assert "ema_acc1" in metrics and metrics["step"] == 18
    conf = json.loads((run_dir / "confusion_matrix.json").read_text())
    m = np.array(conf["matrix"])
    assert m.sum() == 9 and np.trace(m) / 9 == pytest.approx(metrics["acc1"])
    csv_lines = (run_dir / "confusion_matrix.csv").read_text().splitlines()
    assert csv_lines[0] == "true \\ predicted,blue_triangle,green_square,red_disc"
    # the saved weights are the evaluated weights
    model, classes, tf = classifier.load_classifier(run_dir)
    plan = plan_data(spec)
    ds = ClassifierDataset(plan.split.val, tf, plan.boxes)
    items = [ds[i] for i in range(len(ds))]
    batch = (torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items]))
    again = evaluate(model, [batch], 3)
    assert again.acc1 == metrics["acc1"] and classes == conf["classes"]


def test_vit_backbone_frozen_or_cls_only(shapes, tmp_path):
    cfg = tiny_cfg(shapes, data={"image_size": 28},
                   model={"type": "test_dinov2_tiny14_reg", "weights": "random",
                          "train_cls": True})
    built = classifier.build_model(build_spec(cfg).model, 3)
    trainable = sorted(n for n, p in built.model.named_parameters() if p.requires_grad)
    assert trainable == ["fc.bias", "fc.weight", "trunk.cls_token"]
    frozen = classifier.build_model(
        build_spec(tiny_cfg(shapes, model={"type": "test_dinov2_tiny14_reg", "weights": "random",
                                           "freeze_backbone": True})).model, 3)
    assert sorted(n for n, p in frozen.model.named_parameters() if p.requires_grad) == \
        ["fc.bias", "fc.weight"]
    before = built.model.trunk.cls_token.detach().clone()
    blocks = built.model.trunk.blocks[0].attn.qkv.weight.detach().clone()
    run_dir = _run_in_process(build_spec({**cfg, "max_steps": 3}), tmp_path)
    from safetensors.torch import load_file

    sd = load_file(run_dir / "model_final.safetensors")
    assert not torch.equal(sd["trunk.cls_token"], before)  # the CLS token learned
    assert torch.equal(sd["trunk.blocks.0.attn.qkv.weight"], blocks)  # the rest did not


def test_resnet_weights_from_a_local_file(tmp_path):
    cfg = build_spec({}, ["model.type=resnet18"]).model
    donor = classifier.build_model(cfg, 5).model.trunk
    torch.save({"model": {f"module.{k}": v for k, v in donor.state_dict().items()}},
               tmp_path / "w.pth")
    built = classifier.build_model(cfg.model_copy(update={"weights": str(tmp_path / "w.pth")}), 3)
    assert built.weights_label == "file (w.pth)"
    for (k, a), b in zip(donor.state_dict().items(), built.model.trunk.state_dict().values()):
        assert torch.equal(a, b), k
    assert built.model.fc.out_features == 3


def test_killed_run_resumes_to_the_same_weights_and_metrics(shapes, tmp_path):
    cfg = tiny_cfg(shapes, num_epochs=4, model={"ema_step": 2, "ema_decay": 0.5},
                   augment={"enabled": True, "p": 0.5},
                   checkpoint={"every_steps": 3})
    spec = build_spec(cfg)
    reference = _run_in_process(spec, tmp_path / "a")

    handle = launch(spec, runs_root=tmp_path / "b")
    tail = LogTail(handle.run_dir / "log.jsonl")
    killed_at = None
    deadline = time.monotonic() + 180
    while killed_at is None and time.monotonic() < deadline:
        for rec in tail.read_new():
            if rec["kind"] == "checkpoint":
                os.kill(handle.process.pid, signal.SIGKILL)  # no chance to save anything more
                killed_at = rec["step"]
                break
        time.sleep(0.01)
    assert handle.wait(timeout=60) == "dead"
    assert killed_at == 3 and read_status(handle.run_dir)["state"] == "running"  # never ended
    assert not (handle.run_dir / "metrics.json").exists()

    # the worker's entry point, in this process to save a start-up (`runs resume` = the same
    # call in a new process; tests/cli/test_train_cli.py covers that path)
    assert execute(handle.run_dir, runner="local") == "completed"
    resumed = [r for r in read_log(handle.run_dir) if r["kind"] == "resume"]
    assert [r["step"] for r in resumed] == [3]
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((handle.run_dir / "metrics.json").read_text())
    assert a == b and a["step"] == 12
    from safetensors.torch import load_file

    for name in ("model_final.safetensors", "model_ema_final.safetensors"):
        wa, wb = load_file(reference / name), load_file(handle.run_dir / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (name, k)


def test_attention_crop_job_reads_cached_maps(shapes, tmp_path):
    from headless.train.crops import AttentionMap

    cfg = tiny_cfg(shapes, max_steps=2, crop={
        "type": "attention", "temperature": 0.5, "attention_backbone": "test_dinov2_tiny14_reg",
        "attention_weights": "random", "attention_size": 56})
    spec = resolve_spec_paths(build_spec(cfg))
    run_dir = new_run_dir(spec, tmp_path)
    assert classifier.run(spec, run_dir) == "completed"
    stages = [r for r in read_log(run_dir) if r["kind"] == "stage"]
    assert stages[-1]["done"] == stages[-1]["total"] == 27  # every training image, once
    # a second run finds every map in the cache: nothing to compute
    lookup = attention_lookup(spec, plan_data(spec).split.train, torch.device("cpu"),
                              DistInfo(), RunLog(tmp_path))
    assert [r for r in read_log(tmp_path) if r["kind"] == "stage"][-1]["total"] == 0
    assert len(lookup.maps) == 27 and all(m is not None for m in lookup.maps.values())
    ds = ClassifierDataset(plan_data(spec).split.train, None, attention=lookup)
    item = ds.sample(0)
    assert isinstance(item["attention"], AttentionMap) and item["attention"].shape == (4, 4)


def test_a_failing_job_leaves_a_readable_record(tmp_path):
    make_shapes_dataset(tmp_path / "ds", n_per_class=3, size=16)
    (tmp_path / "ds" / "red_disc" / "red_disc_001.png").write_bytes(b"not a png")
    spec = resolve_spec_paths(build_spec(tiny_cfg(tmp_path / "ds", data={"boxes": None},
                                                  max_steps=4, opt={"lr": 0.01})))
    run_dir = new_run_dir(spec, tmp_path / "runs")
    assert execute(run_dir) == "failed"
    status = read_status(run_dir)
    assert status["state"] == "failed" and "red_disc_001.png" in status["message"]
    errors = [r for r in read_log(run_dir) if r["kind"] == "error"]
    assert errors and "cannot be read as an image" in errors[0]["message"]
