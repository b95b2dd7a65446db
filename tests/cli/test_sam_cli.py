"""``dinoseg sam``: label TIFFs, per-mask JSON and a boxes file; box prompts; errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from headless import sam as S
from headless.boxes import Box, BoxSet, read_boxes, write_boxes
from headless.cli import main

AUTO = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
        "--box-nms-thresh", "1.0", "--quiet"]


@pytest.fixture
def folder(tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    iio.imwrite(d / "a.png", (rng.random((50, 70, 3)) * 255).astype(np.uint8))
    tifffile.imwrite(d / "b.tif", (rng.random((40, 44)) * 4000).astype(np.uint16))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture
def ckpt(tmp_path):
    return str(S.save_random_checkpoint(tmp_path / "tiny.pth"))


def test_automatic_masks_for_a_folder(folder, ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["sam", str(folder), "--model", "test_sam_tiny", "--weights", ckpt,
               "--out", str(out), *AUTO])
    assert rc == 0
    err = capsys.readouterr().err
    assert "notes.txt" in err  # skipped and said so
    boxset = read_boxes(out / "sam_boxes.json")
    for name, (h, w) in {"a.png": (50, 70), "b.tif": (40, 44)}.items():
        stem = name.split(".")[0]
        labels = tifffile.imread(out / f"{stem}_sam_labels.tif")
        masks = tifffile.imread(out / f"{stem}_sam_masks.tif").astype(bool)
        info = json.loads((out / f"{stem}_sam.json").read_text())
        n = len(info["masks"])
        assert n > 1 and labels.shape == (h, w) and masks.shape == (n, h, w)
        assert np.array_equal(labels, S.labels_from_masks(masks))
        assert [m["label"] for m in info["masks"]] == list(range(1, n + 1))
        assert info["size"] == [w, h] and info["kind"] == "automatic"
        assert info["params"]["points_per_side"] == 4
        for m, mask in zip(info["masks"], masks):
            assert m["area"] == int(mask.sum())
            assert m["box"] == list(S.mask_to_box(mask).xyxy())
            assert 0.0 <= m["stability_score"] <= 1.0
        # the boxes file holds exactly the tight boxes of the masks, scored by predicted IoU
        got = [(b.xyxy(), b.score, b.source) for b in boxset.boxes[name]]
        assert got == [(tuple(m["box"]), pytest.approx(m["predicted_iou"]), "sam")
                       for m in info["masks"]]
        assert boxset.sizes[name] == (w, h)
    # embeddings were cached next to the images
    assert len(list((folder / ".dinoseg" / "cache" / S.EMBEDDING_CACHE_KIND).glob("*.npz"))) == 2


def test_box_prompts_one_mask_per_box(folder, ckpt, tmp_path, capsys):
    prompts = BoxSet()
    prompts.add("a.png", [Box(2, 3, 30, 40, label="cat"), Box(40, 10, 90, 45),  # sticks out
                          Box(200, 200, 220, 230)], size=(70, 50))  # outside: dropped
    prompts.add("b.tif", [], size=(44, 40))  # zero boxes
    pfile = tmp_path / "prompts.csv"
    write_boxes(pfile, prompts)
    out = tmp_path / "out"
    rc = main(["sam", str(folder / "a.png"), str(folder / "b.tif"), "--boxes", str(pfile),
               "--model", "test_sam_tiny", "--weights", ckpt, "--out", str(out), "--quiet",
               "--format", "csv"])
    assert rc == 0
    assert "dropped" in capsys.readouterr().err  # the reader's fixes are reported
    info = json.loads((out / "a_sam.json").read_text())
    assert len(info["masks"]) == 2 and info["kind"] == "boxes"
    assert [m["prompt"] for m in info["masks"]] == [[2, 3, 30, 40], [40, 10, 70, 45]]
    assert info["masks"][0]["class"] == "cat"
    masks = tifffile.imread(out / "a_sam_masks.tif")
    assert masks.shape == (2, 50, 70)
    assert np.array_equal(tifffile.imread(out / "a_sam_labels.tif"),
                          S.labels_from_masks(masks.astype(bool)))
    b_info = json.loads((out / "b_sam.json").read_text())
    assert b_info["masks"] == []
    b_labels = tifffile.imread(out / "b_sam_labels.tif")
    assert b_labels.shape == (40, 44) and not b_labels.any()
    assert not (out / "b_sam_masks.tif").exists()
    written = read_boxes(out / "sam_boxes.csv")
    assert [b.label for b in written.boxes["a.png"]][:1] == ["cat"]
    assert written.boxes["b.tif"] == []


def test_choose_one_mask_by_attention(folder, ckpt, tmp_path):
    out = tmp_path / "out"
    rc = main(["sam", str(folder / "a.png"), "--model", "test_sam_tiny", "--weights", ckpt,
               "--out", str(out), *AUTO, "--choose", "attention",
               "--backbone", "test_dino_tiny16", "--backbone-weights", "random"])
    assert rc == 0
    info = json.loads((out / "a_sam.json").read_text())
    chosen = info["chosen"]
    assert chosen["rule"] == "attention" and chosen["backbone"] == "test_dino_tiny16"
    flags = [m["chosen"] for m in info["masks"]]
    assert flags.count(True) == 1 and flags.index(True) + 1 == chosen["label"]
    pseudo = read_boxes(out / "pseudo_gt.json")
    assert [b.xyxy() for b in pseudo.boxes["a.png"]] == [
        tuple(info["masks"][chosen["label"] - 1]["box"])
    ]


def test_missing_weights_is_a_clear_error(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    rc = main(["sam", str(folder), "--model", "vit_b", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in err
    assert str(S.weights_dir()) in err
    assert "Traceback" not in err


def test_bad_inputs(folder, ckpt, tmp_path, capsys):
    base = ["--model", "test_sam_tiny", "--weights", ckpt, "--out", str(tmp_path / "o")]
    assert main(["sam", str(tmp_path / "nothing"), *base]) == 2
    assert main(["sam", str(folder), *base, "--pred-iou-thresh", "2"]) == 2
    assert "pred_iou_thresh" in capsys.readouterr().err
    other = BoxSet()
    other.add("zzz.png", [Box(0, 0, 5, 5)], size=(10, 10))
    write_boxes(tmp_path / "other.json", other)
    assert main(["sam", str(folder), *base, "--boxes", str(tmp_path / "other.json")]) == 2
    assert "matches" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    assert main(["sam", str(bad), *base, "--quiet"]) == 2
    assert "broken.png" in capsys.readouterr().err
