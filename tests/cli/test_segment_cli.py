"""``dinoseg segment`` on the real scribble files: label TIFFs carry the scribble values."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from headless.cli import main
from headless.images import read_labels


def miou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([((pred == v) & (truth == v)).sum() / ((pred == v) | (truth == v)).sum()
                          for v in np.unique(truth)]))


def test_train_save_probe_and_write_labels(shared_data, tmp_path, capsys):
    d = shared_data / "scribbles"
    out = tmp_path / "out"
    probe = tmp_path / "probe.npz"
    rc = main(["segment", str(d / "1.tif"), "--scribbles", str(d / "1_labels.tif"),
               "--classifier", "linear", "--save-probe", str(probe), "--probs", "--out",
               str(out), "--quiet"])
    assert rc == 0
    labels = tifffile.imread(out / "1_labels.tif")
    truth = read_labels(d / "1_ground_truth.tif")
    assert labels.shape == truth.shape == (518, 518)
    assert set(np.unique(labels)) == {127, 254}
    assert miou(labels, truth) >= 0.893
    proba = tifffile.imread(out / "1_proba.tif")
    assert proba.shape == (2, 518, 518) and proba.dtype == np.float32
    assert probe.exists()
    text = capsys.readouterr().out
    assert "class values 127, 254" in text

    # the saved probe segments other images without scribbles (3.tif is another grey image)
    rc = main(["segment", str(d / "3.tif"), "--probe", str(probe), "--out", str(out),
               "--quiet"])
    assert rc == 0
    assert set(np.unique(tifffile.imread(out / "3_labels.tif"))) <= {127, 254}


def test_default_random_forest_with_crf_on_three_classes(shared_data, tmp_path):
    d = shared_data / "scribbles"
    rc = main(["segment", str(d / "0.tif"), "--scribbles", str(d / "0_labels.tif"), "--crf",
               "--names", "85=matrix,170=blob,255=dot", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    labels = tifffile.imread(tmp_path / "0_labels.tif")
    assert set(np.unique(labels)) == {85, 170, 255}
    assert miou(labels, read_labels(d / "0_ground_truth.tif")) >= 0.64


def test_stack_with_stack_scribbles(shared_data, tmp_path):
    d = shared_data / "em_cells"
    stack = tifffile.imread(d / "train_stack_small.tif")[:2, :160, :160]
    scr = tifffile.imread(d / "wss_train_labels.tiff")[:2, :160, :160]
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    tifffile.imwrite(tmp_path / "scr.tif", scr)
    rc = main(["segment", str(tmp_path / "stack.tif"), "--scribbles", str(tmp_path / "scr.tif"),
               "--classifier", "linear", "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0
    labels = tifffile.imread(tmp_path / "out" / "stack_labels.tif")
    assert labels.shape == (2, 160, 160) and set(np.unique(labels)) <= {85, 170, 255}


def test_user_errors_exit_2_with_one_line(shared_data, tmp_path, capsys):
    d = shared_data / "scribbles"
    rc = main(["segment", str(d / "1.tif"), "--scribbles", str(d / "0_labels.tif"),
               "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "shape (512, 512)" in err and "(518, 518)" in err
    one = np.zeros((75, 75), np.uint8)
    one[:5] = 127
    tifffile.imwrite(tmp_path / "one.tif", one)
    rc = main(["segment", str(d / "3.tif"), "--scribbles", str(tmp_path / "one.tif"),
               "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "only one class" in capsys.readouterr().err
    rc = main(["segment", str(d / "3.tif"), "--scribbles", str(d / "3_labels.tif"),
               "--save-probe", str(tmp_path / "p.npz"), "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    rc = main(["segment", str(d / "3.tif"), "--probe", str(tmp_path / "p.npz"), "--features",
               "hr", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "feature mode: probe 'classical', features 'hr'" in capsys.readouterr().err
    rc = main(["segment", str(d / "4.jpg"), "--probe", str(tmp_path / "p.npz"),
               "--out", str(tmp_path / "rgb"), "--quiet"])
    assert rc == 1  # the colour image does not match a grey probe: skipped, said why
    assert "skipped 4.jpg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", str(d / "3.tif"), "--out", str(tmp_path)])  # neither source given


def test_feature_knobs_are_flags_recorded_in_the_probe(shared_data, tmp_path):
    """--scale / --vit-weight / --upsample reach the probe metadata and --probe reapplies them."""
    from headless.segment.probe import load_probe

    d = shared_data / "scribbles"
    img = np.squeeze(tifffile.imread(d / "1.tif"))[40:180, 20:160]
    scr = read_labels(d / "1_labels.tif")[40:180, 20:160]
    tifffile.imwrite(tmp_path / "im.tif", img)
    tifffile.imwrite(tmp_path / "scr.tif", scr)
    out, probe = tmp_path / "out", tmp_path / "p.npz"
    vit = ["--backbone", "test_dinov2_tiny14_reg", "--weights", "random"]
    rc = main(["segment", str(tmp_path / "im.tif"), "--scribbles", str(tmp_path / "scr.tif"),
               "--features", "hybrid", "--scale", "1.5", "--vit-weight", "0.5", "--upsample",
               "nearest-exact", *vit, "--save-probe", str(probe), "--out", str(out), "--quiet"])
    assert rc == 0
    p = load_probe(probe)
    assert p.kind == "linear"  # hybrid's default probe
    o = p.meta.feature_options
    assert (o["scale"], o["vit_weight"], o["upsample"]) == (1.5, 0.5, "nearest-exact")
    first = tifffile.imread(out / "im_labels.tif")
    rc = main(["segment", str(tmp_path / "im.tif"), "--probe", str(probe), "--weights", "random",
               "--out", str(tmp_path / "again"), "--quiet"])
    assert rc == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again" / "im_labels.tif"), first)
    rc = main(["segment", str(tmp_path / "im.tif"), "--probe", str(probe), "--weights", "random",
               "--scale", "2", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2  # the probe was trained at scale 1.5
