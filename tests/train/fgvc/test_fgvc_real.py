"""Real weights: the real DINOv2 ViT-S/14 fine-tuned with the IELT head on a small real set
(raccoon vs. background windows of the raccoon photos) beats the same run from random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fgvc_real_set import make_raccoon_vs_background

from headless.jobs.runners import resolve_spec_paths
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec
from headless.train.fgvc import job


def _run(root: Path, weights: str, runs: Path) -> dict:
    spec = resolve_spec_paths(build_spec({
        "job": "fgvc", "device": "cpu", "num_epochs": 2,
        "data": {"root": str(root), "image_size": 56, "batch_size": 8, "num_workers": 0,
                 "val_fraction": 0.0},
        "crop": {"scale": [0.8, 1.0]}, "augment": {"enabled": False},
        "model": {"backbone": "dinov2_vits14", "weights": weights},
        "ielt": {"total_num": 8, "vote_perhead": 4},
        "opt": {"lr": 1e-4, "warmup_epochs": 0.3}, "loss": {"triplet_weight": 0.0}}))
    run_dir = new_run_dir(spec, runs)
    assert job.run(spec, run_dir) == "completed"
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_real_weights_fine_tune_beats_random_weights(shared_data, shared_weights, tmp_path):
    root = make_raccoon_vs_background(shared_data / "raccoon_voc", tmp_path / "set",
                                      n_train=12, n_test=16, size=64)
    real = _run(root, str(shared_weights), tmp_path / "runs")
    rand = _run(root, "random", tmp_path / "runs")
    print(f"real weights top-1 {real['test_acc1']:.4f}, random {rand['test_acc1']:.4f}")
    assert real["test_n"] == 32  # 16 raccoons + 16 background windows, chance 0.5
    assert real["test_acc1"] >= 0.8
    assert real["test_acc1"] >= rand["test_acc1"] + 0.2
