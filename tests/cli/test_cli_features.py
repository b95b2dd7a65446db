"""``dinoseg features`` writes PNG views and NPZ arrays through the engine's one function."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from headless.cli import main


def _img(path, shape=(70, 90, 3)):
    arr = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def test_features_command_writes_maps_and_arrays(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png", (40, 40, 3))
    (tmp_path / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    code = main(["features", str(tmp_path), "--backbone", "test_dino_tiny16", "--weights",
                 "random", "--out", str(out), "--quiet"])
    assert code == 0
    for stem in ("a", "b"):
        for suffix in ("_attn.png", "_mask.png", "_pca.png"):
            assert (out / f"{stem}{suffix}").exists()
        with np.load(out / f"{stem}.npz", allow_pickle=False) as z:
            assert str(z["weights"]) == "random (untrained)"
            heads, h, w = z["attn_heads"].shape
            assert heads == 3 and z["attn_mean"].shape == (h, w) and z["pca"].shape == (h, w, 3)
            np.testing.assert_allclose(z["attn_mean"], z["attn_heads"].mean(0), rtol=1e-6)
            assert set(np.unique(z["mask"])) <= {0, 1}
    a = np.load(out / "a.npz")
    assert a["attn_mean"].shape == (5, 6)  # 70x90 at patch 16 -> ceil grid
    png = Image.open(out / "a_pca.png")
    assert png.text["weights"] == "random (untrained)"


def test_features_command_reports_bad_input(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    code = main(["features", str(tmp_path / "bad.png"), "--backbone", "test_dino_tiny16",
                 "--weights", "random", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 1
    assert "bad.png" in capsys.readouterr().err


def test_missing_weights_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    _img(tmp_path / "a.png")
    r = subprocess.run(
        [sys.executable, "-m", "headless", "features", str(tmp_path / "a.png"), "--backbone",
         "dino_vits16", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "dino_deitsmall16_pretrain.pth" in r.stderr and "https://" in r.stderr


@pytest.mark.parametrize("name", ["dinov2_vits14", "dino_vits8"])
def test_console_script_help_lists_backbones(name):
    r = subprocess.run(["dinoseg", "features", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--backbone" in r.stdout
    from headless.features.backbones import list_backbones

    assert name in list_backbones()


@pytest.mark.parametrize("mode", ["hr", "classical"])
def test_dense_modes_add_a_full_resolution_pca(tmp_path, mode):
    _img(tmp_path / "a.png", (50, 66, 3))
    out = tmp_path / "out"
    code = main(["features", str(tmp_path / "a.png"), "--backbone", "test_dinov2_tiny14_reg",
                 "--weights", "random", "--mode", mode, "--shifts", "4", "--out", str(out),
                 "--quiet"])
    assert code == 0
    with np.load(out / "a.npz") as z:
        dense = z["dense_pca"]
        assert dense.shape == (50, 66, 3) and str(z["mode"]) == mode
        assert 0.0 <= dense.min() and dense.max() <= 1.0 and dense.std() > 0
    assert Image.open(out / "a_dense_pca.png").size == (66, 50)
