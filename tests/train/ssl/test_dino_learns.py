"""A short DINO pre-training run on planted images learns what the augmentations keep.

The planted set: white-on-black stripes (random orientation, frequency, phase) against discs
(random positions and radii), both under heavy pixel noise and a random grey level. A random
ViT's CLS feature mostly sees the noise and the grey level, so its k-NN accuracy is well short
of 100 %; DINO's crops keep the texture and change the rest, so the teacher should learn it.
The k-NN figures are the job's own monitor: one evaluation of the initial teacher (step 0) and
one at the end, on the same labelled folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headless.jobs import get_job
from headless.jobs.runlog import RunLog, read_log
from headless.jobs.spec import build_spec

SIDE = 32


def _planted(kind: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    if kind == "stripes":
        th, f = rng.uniform(0, np.pi), rng.uniform(0.3, 0.6)
        m = np.sin(f * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 6)) > 0
    else:
        m = np.zeros((SIDE, SIDE), bool)
        for _ in range(3):
            cy, cx, r = rng.uniform(4, 28), rng.uniform(4, 28), rng.uniform(3, 6)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    g = rng.uniform(0.0, 0.3)
    a = np.where(m, 1.0 - g, g)[..., None].repeat(3, axis=2)
    a = np.clip(a + rng.normal(0, 0.5, a.shape), 0, 1)
    return (a * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dino_planted")
    rng = np.random.default_rng(0)
    for split, n in (("pretext", 48), ("train", 16), ("val", 32)):
        for kind in ("stripes", "blobs"):
            folder = root / split if split == "pretext" else root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_planted(kind, rng)).save(folder / f"{kind}_{i:03d}.png")
    return root


def _short_run(root: Path, run_dir: Path, seed: int) -> list[dict]:
    """30 epochs of 6 steps; the paper's temperatures and momentum, BatchNorm in the head.

    Without it the head's output collapses to uniform on this short run (loss -> ln 64) while
    the backbone still improves; the README's "short runs" note says so."""
    spec = build_spec({
        "job": "dino", "num_epochs": 30, "seed": seed, "cpu_threads": 2,
        "data": {"pretext": str(root / "pretext"), "batch_size": 16, "num_workers": 0,
                 "knn_root": str(root)},
        "eval_every": 1000,
        "crops": {"global_size": SIDE, "local_size": 16, "n_local": 2},
        "model": {"arch": "test_vit", "out_dim": 64, "head_hidden_dim": 64,
                  "head_bottleneck_dim": 32, "use_bn_in_head": True},
        "opt": {"lr": 0.03, "warmup_epochs": 1},
        "log": {"interval": 1}, "checkpoint": {"every_steps": 10000, "keep": 1},
    })
    run_dir.mkdir(parents=True)
    assert get_job("dino").run(spec, run_dir, stop=None, log=RunLog(run_dir)) == "completed"
    return read_log(run_dir)


@pytest.mark.parametrize("seed", [3, 5])
def test_short_pretraining_lowers_the_loss_and_raises_knn_over_its_initialisation(
        planted, tmp_path, seed):
    logs = _short_run(planted, tmp_path / "run", seed)
    losses = [r["loss"] for r in logs if r["kind"] == "train"]
    assert len(losses) == 180
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.3
    evals = [r for r in logs if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 180]
    init, final = evals[0]["knn10_top1"], evals[-1]["knn10_top1"]
    assert init < 97.0  # the planted texture is not already free for the random network
    assert final >= init + 5.0 and final >= 95.0, (init, final)
