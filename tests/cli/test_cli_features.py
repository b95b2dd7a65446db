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


def test_help_points_at_a_command_that_exists_and_it_lists_backbones(tmp_path, monkeypatch,
                                                                     capsys):
    r = subprocess.run(["dinoseg", "features", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--backbone" in r.stdout
    assert "--list" not in r.stdout and "dinoseg backbones" in r.stdout
    # one official checkpoint in the cache: listed as cached, the others not
    monkeypatch.setenv("DINOSEG_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "dino_deitsmall8_pretrain.pth").write_bytes(b"x")
    assert main(["backbones"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:-1]}
    assert "cached: " + str(tmp_path / "dino_deitsmall8_pretrain.pth") in lines["dino_vits8"]
    assert "not cached" in lines["dinov2_vits14"] and lines["dinov2_vits14"].split()[1] == "14"
    assert "none" in lines["test_dino_tiny16"] and lines["test_dino_tiny16"].split()[1] == "16"
    assert main(["backbones", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"dinov2_vits14_reg", "dino_vitb8"}


@pytest.mark.parametrize("args, message", [
    (["--clusters", "1"], "--clusters must be at least 2"),
    (["--foreground-only", "--clusters", "3"], "--foreground-only needs --foreground"),
    (["--crf"], "--crf needs --foreground"),
    (["--colour-weight", "-1", "--clusters", "2"], "must not be negative"),
    (["--pos-resize", "nearest"], "invalid choice"),
])
def test_bad_options_fail_in_one_line_before_loading(tmp_path, capsys, args, message):
    _img(tmp_path / "a.png")
    try:
        code = main(["features", str(tmp_path / "a.png"), "--backbone", "dinov2_vitg14",
                     "--weights", "random", "--out", str(tmp_path / "o"), *args])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_foreground_and_clusters_are_written(tmp_path):
    _img(tmp_path / "a.png", (56, 84, 3))
    out = tmp_path / "out"
    code = main(["features", str(tmp_path / "a.png"), "--backbone", "test_dinov2_tiny14_reg",
                 "--weights", "random", "--foreground", "pca", "--crf", "--clusters", "3",
                 "--colour-weight", "0.5", "--foreground-only", "--mode", "bilinear",
                 "--pos-resize", "official", "--out", str(out), "--quiet"])
    assert code == 0
    with np.load(out / "a.npz") as z:
        fg, cl = z["foreground"], z["clusters"]
        assert fg.shape == (56, 84) and set(np.unique(fg)) <= {0, 1}
        assert str(z["foreground_method"]) == "pca" and z["foreground_score"].shape == (56, 84)
        assert np.all(cl[fg == 0] == 0) and set(np.unique(cl[fg == 1])) <= {1, 2, 3}
    assert Image.open(out / "a_foreground.png").size == (84, 56)
    assert Image.open(out / "a_clusters.png").mode == "RGB"
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["pos_resize"] == "official"
    assert 0 <= summary["images"]["a.png"]["foreground_fraction"] <= 1


def test_real_weights_through_the_cli(tmp_path, shared_weights, shared_data):
    """``--weights FILE`` with the real DINOv2 on a raccoon photo: the foreground overlaps the
    annotated box far more than its area share."""
    from headless.boxes.formats.voc import read_voc

    photo = shared_data / "raccoon_voc" / "images" / "raccoon-1.jpg"
    out = tmp_path / "out"
    code = main(["features", str(photo), "--backbone", "dinov2_vits14", "--weights",
                 str(shared_weights), "--size", "224", "--foreground", "attention",
                 "--out", str(out), "--quiet"])
    assert code == 0
    box = read_voc(shared_data / "raccoon_voc" / "annotations").boxes["raccoon-1.jpg"][0]
    with np.load(out / "raccoon-1.npz") as z:
        assert str(z["weights"]) == f"file ({shared_weights.name})"
        fg = z["foreground"].astype(bool)
    inside = np.zeros_like(fg)
    inside[int(box.y0):int(box.y1), int(box.x0):int(box.x1)] = True
    share = (fg & inside).sum() / fg.sum()
    assert share > inside.mean() + 0.1 and share > 0.9


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
