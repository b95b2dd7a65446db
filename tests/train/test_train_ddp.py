"""DDP through torchrun on CPU (gloo): two processes share each step and each evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headless.jobs.runlog import read_log
from headless.jobs.runners import launch
from headless.jobs.spec import build_spec
from headless.train.synthetic import make_shapes_dataset


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    make_shapes_dataset(tmp_path / "ds", n_per_class=7, size=24)
    spec = build_spec({
        "data": {"root": str(tmp_path / "ds"), "image_size": 24, "batch_size": 3,
                 "num_workers": 0},
        "model": {"type": "test_resnet_tiny", "ema_step": 1, "ema_decay": 0.5},
        "augment": {"enabled": False}, "device": "cpu", "cpu_threads": 1,
        "torchrun": {"nproc_per_node": 2}, "num_epochs": 2, "log": {"interval": 1},
    })
    handle = launch(spec, runner="torchrun", runs_root=tmp_path / "runs")
    assert handle.wait(timeout=300) == "completed", (handle.run_dir / "worker.log").read_text()
    records = read_log(handle.run_dir)
    (start,) = [r for r in records if r["kind"] == "start"]
    # 21 images: 3 for validation (one per class), 18 training; global batch 2 x 3 = 6
    assert start["world_size"] == 2 and start["n_val"] == 3 and start["steps_per_epoch"] == 3
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    metrics = json.loads((handle.run_dir / "metrics.json").read_text())
    conf = np.array(json.loads((handle.run_dir / "confusion_matrix.json").read_text())["matrix"])
    # the ranks' shares of the validation set (2 + 1 images) are summed, each counted once
    assert metrics["n"] == 3 and metrics["ema_n"] == 3 and conf.sum() == 3
