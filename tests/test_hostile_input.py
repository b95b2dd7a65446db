"""Hostile input through every ``dinoseg`` command (issue 15): one table, one row per input.

Each row names the command line (``{tmp}`` is the row's temporary folder), a ``setup`` that makes
the hostile files there, the exit code, a regex that the error output must contain, and the files
whose bytes must be the same afterwards. Every exit-2 error is ONE line
``dinoseg <command>: error: ...`` (argparse's own errors too: no usage lines), never a traceback.
Everything runs in-process through :func:`headless.cli.main` with tiny models.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile

from headless.cli import main

# --------------------------------------------------------------------------------------------
# hostile files


def _png(path: Path, array: np.ndarray) -> Path:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array)
    return path


def good_image(tmp: Path, name: str = "good.png") -> Path:
    rng = np.random.default_rng(0)
    img = (rng.random((48, 48, 3)) * 60).astype(np.uint8)
    img[12:36, 12:36] = 220
    return _png(tmp / name, img)


def scribbles(tmp: Path) -> Path:
    s = np.zeros((48, 48), np.uint8)
    s[2:10, 2:10] = 85
    s[16:30, 16:30] = 170
    tifffile.imwrite(tmp / "good_scr.tif", s)
    return tmp / "good_scr.tif"


def odd_images(tmp: Path) -> None:
    """good.png and every odd image class of the issue."""
    good_image(tmp)
    (tmp / "empty.png").write_bytes(b"")
    raw = (tmp / "good.png").read_bytes()
    (tmp / "trunc.png").write_bytes(raw[: len(raw) // 2])
    _png(tmp / "one.png", np.zeros((1, 1, 3), np.uint8))
    rng = np.random.default_rng(1)
    tifffile.imwrite(tmp / "stack3.tif", (rng.random((3, 64, 64)) * 255).astype(np.uint8))
    nan = rng.random((64, 64)).astype(np.float32)
    nan[5:20, 5:20] = np.nan
    tifffile.imwrite(tmp / "nan.tif", nan)
    tifffile.imwrite(tmp / "allnan.tif", np.full((64, 64), np.nan, np.float32))
    tifffile.imwrite(tmp / "five.tif", rng.random((2, 2, 2, 16, 16)).astype(np.float32))


class _Evil:
    """A pickle whose loading would create a marker file (it must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def weights_files(tmp: Path) -> None:
    """Weights files that are not checkpoints: random bytes, a zip, a malicious pickle."""
    odd_images(tmp)
    (tmp / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    (tmp / "archive.pt").write_bytes(buf.getvalue())
    (tmp / "evil.pt").write_bytes(pickle.dumps({"model": _Evil(tmp / "PWNED")}))
    (tmp / "evil.pth").write_bytes((tmp / "evil.pt").read_bytes())


def box_files(tmp: Path) -> None:
    """Malformed box files next to a good ground truth (gt.json) for good.png (48 x 48)."""
    odd_images(tmp)
    image = {"id": 1, "file_name": "good.png", "width": 48, "height": 48}
    cats = [{"id": 1, "name": "x"}]

    def coco(name, images=(image,), anns=None, categories=cats):
        anns = anns if anns is not None else [
            {"id": 1, "image_id": 1, "bbox": [1, 1, 20, 20], "category_id": 1}]
        (tmp / name).write_text(json.dumps({"images": list(images), "annotations": anns,
                                            "categories": categories}))

    coco("gt.json")
    coco("listids.json", images=[{**image, "id": [1]}],
         anns=[{"id": 1, "image_id": [1], "bbox": [1, 1, 5, 5], "category_id": 1}])
    coco("dictcat.json", anns=[{"id": 1, "image_id": 1, "bbox": [1, 1, 5, 5],
                                "category_id": {"a": 1}}])
    coco("outside.json", anns=[{"id": 1, "image_id": 1, "bbox": [500, 500, 50, 50],
                                "category_id": 1}])
    coco("negsize.json", images=[{**image, "width": -48, "height": 10**30}])
    coco("bigsize.json", images=[{**image, "width": 10**30}])
    coco("strbox.json", anns=[{"id": 1, "image_id": 1, "bbox": "1,1,5,5", "category_id": 1}])
    coco("nanbox.json", anns=[{"id": 1, "image_id": 1, "bbox": [float("nan"), 1, 2, 2],
                               "category_id": 1}])
    coco("sized.json", images=[{**image, "width": 96, "height": 96}])
    (tmp / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp / "deepobj.json").write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (tmp / "null.json").write_text("null")
    (tmp / "results.json").write_text("[]")
    (tmp / "wrongtypes.json").write_text('{"images": "nope", "annotations": 5}')
    (tmp / "notjson.json").write_bytes(b"\xff\xfe\x00garbage")
    header = "image,width,height,label,x0,y0,x1,y1,score,source\n"
    (tmp / "big.csv").write_text(header + "good.png,48,48,x,1,1,5," + "9" * 200_000 + ",1,\n")
    (tmp / "bigname.csv").write_text(header + "a" * 200_000 + ",48,48,x,1,1,5,5,1,\n")
    (tmp / "nan.csv").write_text(header + "good.png,48,48,x,nan,1,5,5,1,\n")
    (tmp / "bomb.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        '"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><annotation><filename>&lol2;'
        '</filename><size><width>48</width><height>48</height></size></annotation>')
    (tmp / "ext.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        '<annotation><filename>&xxe;</filename></annotation>')
    (tmp / "broken.xml").write_text("<annotation><filename>good.png</filename>")
    (tmp / "folder_out").mkdir()


def probe_files(tmp: Path) -> None:
    """A real classical probe for good.png (``probe.npz``) and tampered copies of it."""
    from headless.cli import main as cli

    odd_images(tmp)
    scribbles(tmp)
    assert cli(["segment", str(tmp / "good.png"), "--scribbles", str(tmp / "good_scr.tif"),
                "--classifier", "linear", "--save-probe", str(tmp / "probe.npz"),
                "--out", str(tmp / "first"), "--quiet"]) == 0
    with np.load(tmp / "probe.npz", allow_pickle=False) as data:
        members = {k: data[k] for k in data.files}
    meta = json.loads(str(members["metadata_json"]))

    def tampered(name, change=None, arrays=None, raw_json=None):
        m = json.loads(json.dumps(meta))
        if change is not None:
            change(m)
        out = dict(members, **(arrays or {}))
        out["metadata_json"] = np.array(raw_json if raw_json is not None else json.dumps(m))
        np.savez_compressed(tmp / name, **out)

    tampered("meta_list.npz", raw_json="[]")
    tampered("meta_null.npz", raw_json="null")
    tampered("meta_deep.npz", raw_json="[" * 100_000 + "]" * 100_000)
    tampered("dim_null.npz", lambda m: m["meta"].update(feature_dim=None))
    tampered("dim_str.npz", lambda m: m["meta"].update(feature_dim="78"))
    tampered("dim_huge.npz", lambda m: m["meta"].update(feature_dim=10**30))
    tampered("sigmas.npz", lambda m: m["meta"]["feature_options"].update(sigmas=[1e6]))
    tampered("class_neg.npz", lambda m: m["meta"].update(class_values=[-5, 170]))
    tampered("names_int.npz", lambda m: m["meta"].update(class_names=[1, 2]))
    tampered("kind_list.npz", lambda m: m.update(classifier=["linear"]))
    tampered("mode_bad.npz", lambda m: m["meta"].update(feature_mode="telepathy"))
    w = members["weight"].copy()
    w.flat[0] = np.nan
    tampered("nan_weight.npz", arrays={"weight": w})
    tampered("big_weight.npz", arrays={"weight": np.zeros((2, 200_000), np.float32)})
    tampered("extra.npz", arrays={"junk": np.zeros(3_000_000, np.float32)})
    (tmp / "notzip.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp / "evil.npz").write_bytes(pickle.dumps(_Evil(tmp / "PWNED")))


def train_env(tmp: Path) -> None:
    """A tiny ImageFolder and specs for ``dinoseg train``: good, typo, wrong type, a list."""
    import yaml

    from headless.train.synthetic import make_shapes_dataset

    make_shapes_dataset(tmp / "ds", n_per_class=2, size=24)
    spec = {"data": {"root": str(tmp / "ds"), "image_size": 24, "batch_size": 2,
                     "num_workers": 0},
            "model": {"type": "test_resnet_tiny"}, "augment": {"enabled": False},
            "num_epochs": 1, "cpu_threads": 1}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    (tmp / "unknown.yaml").write_text(yaml.safe_dump({**spec, "colour": "red"}))
    (tmp / "typo.yaml").write_text(yaml.safe_dump({**spec, "num_epoch": 3}))
    (tmp / "types.yaml").write_text(yaml.safe_dump({**spec, "num_epochs": "many"}))
    (tmp / "list.yaml").write_text("- data\n- model\n")
    (tmp / "bad.yaml").write_text("data: [unclosed\n")
    (tmp / "deep.yaml").write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")


def fake_training_run(tmp: Path) -> None:
    """A classifier run folder (config.yaml only): not a batch run, not an fgvc run."""
    from headless.jobs.spec import build_spec, save_spec

    train_env(tmp)
    run = tmp / "runs" / "20240101-000000-classifier-x"
    run.mkdir(parents=True)
    save_spec(build_spec({"data": {"root": str(tmp / "ds")}}), run / "config.yaml")
    (tmp / "notarun").mkdir()


def ssl_data(tmp: Path) -> None:
    """train/ and val/ ImageFolders of two tiny classes, and a folder that holds no image."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            for i in range(2):
                _png(tmp / "data" / split / c / f"{i}.png",
                     (rng.random((32, 32, 3)) * 255).astype(np.uint8))
    (tmp / "nothing").mkdir()
    (tmp / "nothing" / "notes.txt").write_text("no images here")
    (tmp / "out_dir").mkdir()


def sam_checkpoint(tmp: Path) -> None:
    from headless import sam as S

    box_files(tmp)
    weights_files(tmp)
    S.save_random_checkpoint(tmp / "sam.pth")


def readonly_project(tmp: Path, monkeypatch) -> None:
    """The image folder is read-only (root can write anywhere, so ``os.access`` says so)."""
    import headless.store as store_mod

    odd_images(tmp)
    scribbles(tmp)
    monkeypatch.setenv("DINOSEG_HOME", str(tmp / "home"))
    real = os.access
    images = str(tmp / "ro")
    (tmp / "ro").mkdir()
    good_image(tmp / "ro")
    monkeypatch.setattr(store_mod.os, "access",
                        lambda p, mode, *a, **k: False if str(p).startswith(images)
                        else real(p, mode, *a, **k))


# --------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    setup: Callable[..., None] | None
    exit_code: int
    message: str  # regex searched in stderr
    must_be_unchanged: tuple[str, ...] = ()
    one_line: bool = True
    must_not_exist: tuple[str, ...] = ("PWNED",)
    extra: dict = field(default_factory=dict)


TINY = ["--backbone", "test_dino_tiny16", "--weights", "random", "--quiet"]
SAM = ["--model", "test_sam_tiny", "--weights", "{tmp}/sam.pth", "--points-per-side", "4",
       "--quiet"]
G = "{tmp}/good.png"
ERR_IMAGE = r"cannot be read as an image|the file is empty"


def _f(cmd, *rest, out="{tmp}/out"):
    return ["features", *rest, *TINY, "--out", out] if cmd == "features" else None


FEATURES = [
    Case("features-empty-file", _f("features", "{tmp}/empty.png"), odd_images, 1,
         r"empty\.png: the file is empty"),
    Case("features-truncated-png", _f("features", "{tmp}/trunc.png"), odd_images, 1,
         r"trunc\.png: cannot be read as an image \(OSError: image file is truncated\)"),
    Case("features-1x1", _f("features", "{tmp}/one.png"), odd_images, 0, r"random"),
    Case("features-3-slice-stack", _f("features", "{tmp}/stack3.tif"), odd_images, 0,
         r"stack3\.tif: 3 x 64 x 64 read as one colour image"),
    Case("features-nan-tiff", _f("features", "{tmp}/nan.tif"), odd_images, 0, r"random"),
    Case("features-all-nan-tiff", _f("features", "{tmp}/allnan.tif"), odd_images, 1,
         r"no finite values"),
    Case("features-5d-tiff", _f("features", "{tmp}/five.tif"), odd_images, 1,
         r"got shape \(2, 2, 2, 16, 16\)"),
    Case("features-size-negative", _f("features", G, "--size", "-5"), odd_images, 2,
         r"argument --size: must be at least 1"),
    Case("features-size-zero", _f("features", G, "--size", "0"), odd_images, 2,
         r"argument --size: must be at least 1"),
    Case("features-size-float", _f("features", G, "--size", "1e9"), odd_images, 2,
         r"argument --size: expected a whole number"),
    Case("features-keep-2", _f("features", G, "--keep", "2"), odd_images, 2,
         r"argument --keep: must be in \(0, 1\]"),
    Case("features-keep-nan", _f("features", G, "--keep", "nan"), odd_images, 2,
         r"argument --keep: must be in \(0, 1\]"),
    Case("features-stride-0", _f("features", G, "--stride", "0"), odd_images, 2,
         r"argument --stride: must be at least 1"),
    Case("features-dist-negative", _f("features", G, "--mode", "hr", "--dist", "-3"),
         odd_images, 2, r"shift distances must be positive"),
    Case("features-clusters-1", _f("features", G, "--clusters", "1"), odd_images, 2,
         r"--clusters must be at least 2"),
    Case("features-device-tpu9", _f("features", G, "--device", "tpu9"), odd_images, 2,
         r"unknown device 'tpu9'"),
    Case("features-out-is-a-file", _f("features", G, out=G), odd_images, 2,
         r"--out .*good\.png is a file; give a folder", must_be_unchanged=("good.png",)),
    Case("features-no-such-input", _f("features", "{tmp}/nowhere.png"), odd_images, 2,
         r"nowhere\.png: no such file or folder"),
    Case("features-missing-weights",
         ["features", G, "--backbone", "test_dino_tiny16", "--weights", "{tmp}/none.pt",
          "--out", "{tmp}/out"], weights_files, 2, r"none\.pt: no such weights file"),
    Case("features-weights-random-bytes",
         ["features", G, "--backbone", "test_dino_tiny16", "--weights", "{tmp}/random.pt",
          "--out", "{tmp}/out"], weights_files, 2, r"random\.pt"),
    Case("features-weights-zip",
         ["features", G, "--backbone", "test_dino_tiny16", "--weights", "{tmp}/archive.pt",
          "--out", "{tmp}/out"], weights_files, 2, r"archive\.pt"),
    Case("features-weights-evil-pickle",
         ["features", G, "--backbone", "test_dino_tiny16", "--weights", "{tmp}/evil.pt",
          "--out", "{tmp}/out"], weights_files, 2, r"evil\.pt",
         must_be_unchanged=("evil.pt",)),
    Case("features-weights-an-image",
         ["features", G, "--backbone", "test_dino_tiny16", "--weights", G,
          "--out", "{tmp}/out"], weights_files, 2, r"good\.png"),
    Case("features-unknown-backbone",
         ["features", G, "--backbone", "dinov9_huge", "--weights", "random", "--out",
          "{tmp}/out"], odd_images, 2, r"dinov9_huge"),
    Case("features-slurm-without-sbatch", _f("features", G, "--runner", "slurm"), odd_images, 2,
         r"SLURM is not available here|submitit"),
    Case("features-shards-0", _f("features", G, "--runner", "local", "--shards", "0"),
         odd_images, 2, r"argument --shards: must be at least 1"),
    Case("features-shards-more-than-images",
         _f("features", G, "--runner", "local", "--shards", "5"), odd_images, 2,
         r"--shards 5 for 1 image\(s\): at most one shard per image"),
]

B = ["boxes", G, "--method", "lost", *TINY]
BOXES = [
    Case("boxes-empty-file", ["boxes", "{tmp}/empty.png", "--method", "lost", *TINY, "--out",
                              "{tmp}/b.json"], odd_images, 2, r"^$|failed: empty\.png",
         one_line=False),
    Case("boxes-5d-tiff", ["boxes", "{tmp}/five.tif", "--method", "lost", *TINY, "--out",
                           "{tmp}/b.json"], odd_images, 2, r"failed: five\.tif: .*shape",
         one_line=False),
    Case("boxes-all-nan", ["boxes", "{tmp}/allnan.tif", "--method", "tokencut", *TINY,
                           "--out", "{tmp}/b.json"], odd_images, 2, r"no finite values",
         one_line=False),
    Case("boxes-1x1", ["boxes", "{tmp}/one.png", "--method", "lost", *TINY, "--out",
                       "{tmp}/b.json"], odd_images, 0, r""),
    Case("boxes-size-negative", [*B, "--size", "-5", "--out", "{tmp}/b.json"], odd_images, 2,
         r"argument --size: must be at least 1"),
    Case("boxes-param-unknown", [*B, "--param", "kk=5", "--out", "{tmp}/b.json"], odd_images, 2,
         r"lost has no parameter 'kk' \(did you mean 'k'\?\)"),
    Case("boxes-param-k-negative", [*B, "--param", "k=-1", "--out", "{tmp}/b.json"],
         odd_images, 2, r"lost parameter k=-1: must be a whole number >= 1"),
    Case("boxes-param-tau-nan", ["boxes", G, "--method", "tokencut", *TINY, "--param",
                                 "tau=NaN", "--out", "{tmp}/b.json"], odd_images, 2,
         r"tokencut parameter tau=nan: must be finite"),
    Case("boxes-param-list", [*B, "--param", "k=[1, 2]", "--out", "{tmp}/b.json"], odd_images,
         2, r"lost parameter k"),
    Case("boxes-param-no-equals", [*B, "--param", "oops", "--out", "{tmp}/b.json"], odd_images,
         2, r"--param expects KEY=VALUE"),
    Case("boxes-param-handling", [*B, "--param", "handling=magic", "--out", "{tmp}/b.json"],
         odd_images, 2, r"--param handling= must be one of"),
    Case("boxes-device-tpu9", [*B, "--device", "tpu9", "--out", "{tmp}/b.json"], odd_images, 2,
         r"unknown device 'tpu9'"),
    Case("boxes-out-is-an-image", [*B, "--out", G], odd_images, 2,
         r"unknown box file type '\.png'", must_be_unchanged=("good.png",)),
    Case("boxes-out-is-a-folder", [*B, "--out", "{tmp}/od", "--format", "coco"],
         lambda t: (odd_images(t), (t / "od").mkdir()), 2, r"--out .*od is a folder"),
    Case("boxes-out-under-a-file", [*B, "--out", "{tmp}/good.png/x.json"], odd_images, 2,
         r"good\.png is a file, not a folder", must_be_unchanged=("good.png",)),
    Case("boxes-export-out-unknown", ["boxes-export", "{tmp}", "--out", "{tmp}/x.png"],
         odd_images, 2, r"unknown box file type '\.png'"),
    Case("boxes-image-list-missing", [*B, "--image-list", "{tmp}/none.txt", "--out",
                                      "{tmp}/b.json"], odd_images, 2,
         r"cannot read the image list"),
    Case("boxes-bf16-without-runner", [*B, "--precision", "bf16", "--out", "{tmp}/b.json"],
         odd_images, 2, r"--precision bf16 needs --runner"),
    Case("boxes-shards-more-than-images", [*B, "--runner", "local", "--shards", "3", "--out",
                                           "{tmp}/b.json"], odd_images, 2,
         r"--shards 3 for 1 image"),
]

EXPORT = [
    Case("boxes-export-not-a-folder", ["boxes-export", G, "--out", "{tmp}/e.json"], odd_images,
         2, r"good\.png: not a folder"),
    Case("boxes-export-nothing-saved", ["boxes-export", "{tmp}", "--out", "{tmp}/x.json"],
         odd_images, 2, r"no saved boxes to export", must_be_unchanged=("good.png",)),
    Case("boxes-export-over-an-image", ["boxes-export", "{tmp}", "--out", G], odd_images, 2,
         r"unknown box file type '\.png'", must_be_unchanged=("good.png",)),
]

EB = ["eval-boxes"]
EVAL_BOXES = [
    Case("eval-boxes-coco-ids-lists", [*EB, "{tmp}/listids.json", "{tmp}/gt.json"], box_files, 2,
         r"listids\.json: images\[0\]: field 'id' must be a number or a string, got list"),
    Case("eval-boxes-coco-category-object", [*EB, "{tmp}/dictcat.json", "{tmp}/gt.json"],
         box_files, 2, r"field 'category_id' must be a number or a string, got dict"),
    Case("eval-boxes-deep-json", [*EB, "{tmp}/deep.json", "{tmp}/gt.json"], box_files, 2,
         r"deep\.json: .*nested too deeply"),
    Case("eval-boxes-deep-json-object", [*EB, "{tmp}/deepobj.json", "{tmp}/gt.json"],
         box_files, 2, r"deepobj\.json: .*nested too deeply"),
    Case("eval-boxes-null", [*EB, "{tmp}/null.json", "{tmp}/gt.json"], box_files, 2,
         r"expected a JSON object"),
    Case("eval-boxes-results-list", [*EB, "{tmp}/results.json", "{tmp}/gt.json"], box_files, 2,
         r"COCO \*results\* list"),
    Case("eval-boxes-wrong-types", [*EB, "{tmp}/wrongtypes.json", "{tmp}/gt.json"], box_files,
         2, r"field 'images' must be a list"),
    Case("eval-boxes-not-utf8", [*EB, "{tmp}/notjson.json", "{tmp}/gt.json"], box_files, 2,
         r"notjson\.json"),
    Case("eval-boxes-negative-size", [*EB, "{tmp}/negsize.json", "{tmp}/gt.json"], box_files, 2,
         r"field 'width' must be a positive whole number"),
    Case("eval-boxes-huge-size", [*EB, "{tmp}/bigsize.json", "{tmp}/gt.json"], box_files, 2,
         r"field 'width' .* is larger than any image"),
    Case("eval-boxes-bbox-string", [*EB, "{tmp}/strbox.json", "{tmp}/gt.json"], box_files, 2,
         r"bbox"),
    Case("eval-boxes-bbox-nan", [*EB, "{tmp}/nanbox.json", "{tmp}/gt.json"], box_files, 2,
         r"bbox"),
    Case("eval-boxes-csv-field-over-128kb", [*EB, "{tmp}/big.csv", "{tmp}/gt.json"], box_files,
         2, r"big\.csv: line \d+: not a valid CSV box file \(field larger than field limit"),
    Case("eval-boxes-csv-name-over-128kb", [*EB, "{tmp}/bigname.csv", "{tmp}/gt.json"],
         box_files, 2, r"bigname\.csv: line \d+: not a valid CSV box file"),
    Case("eval-boxes-csv-nan", [*EB, "{tmp}/nan.csv", "{tmp}/gt.json"], box_files, 2,
         r"nan\.csv"),
    Case("eval-boxes-voc-entity-expansion", [*EB, "{tmp}/bomb.xml", "{tmp}/gt.json"], box_files,
         2, r"bomb\.xml: refused: unsafe XML"),
    Case("eval-boxes-voc-external-entity", [*EB, "{tmp}/ext.xml", "{tmp}/gt.json"], box_files,
         2, r"ext\.xml: refused: unsafe XML"),
    Case("eval-boxes-voc-broken", [*EB, "{tmp}/broken.xml", "{tmp}/gt.json"], box_files, 2,
         r"broken\.xml"),
    Case("eval-boxes-outside-the-image", [*EB, "{tmp}/outside.json", "{tmp}/gt.json"],
         box_files, 0, r"lies outside the 48x48 image; dropped", one_line=False),
    Case("eval-boxes-sizes-disagree", [*EB, "{tmp}/sized.json", "{tmp}/gt.json"], box_files, 0,
         r"another size in the predictions than in the ground truth", one_line=False),
    Case("eval-boxes-json-is-a-folder", [*EB, "{tmp}/gt.json", "{tmp}/gt.json", "--json",
                                         "{tmp}/folder_out"], box_files, 2,
         r"--json .*folder_out is a folder; give a file name"),
    Case("eval-boxes-threshold-nan", [*EB, "{tmp}/gt.json", "{tmp}/gt.json", "--threshold",
                                      "nan"], box_files, 2, r"--threshold must lie in"),
    Case("eval-boxes-an-image", [*EB, "{tmp}/gt.json", G], box_files, 2,
         r"unknown box file type '\.png'"),
    Case("eval-boxes-missing", [*EB, "{tmp}/gt.json", "{tmp}/none.json"], box_files, 2,
         r"none\.json: no such file or folder"),
]

SAM_ROWS = [
    Case("sam-odd-images", ["sam", "{tmp}/empty.png", "{tmp}/trunc.png", "{tmp}/five.tif",
                            G, *SAM, "--out", "{tmp}/m"], sam_checkpoint, 0,
         r"failed: trunc\.png: .*truncated", one_line=False),
    Case("sam-only-bad-images", ["sam", "{tmp}/empty.png", "{tmp}/five.tif", *SAM, "--out",
                                 "{tmp}/m"], sam_checkpoint, 2, r"failed: empty\.png: .*empty",
         one_line=False),
    Case("sam-out-is-a-file", ["sam", G, *SAM, "--out", G], sam_checkpoint, 2,
         r"--out .*good\.png is a file; give a folder", must_be_unchanged=("good.png",)),
    Case("sam-device-tpu9", ["sam", G, *SAM, "--device", "tpu9", "--out", "{tmp}/m"],
         sam_checkpoint, 2, r"unknown device 'tpu9'"),
    Case("sam-missing-weights", ["sam", G, "--model", "test_sam_tiny", "--weights",
                                 "{tmp}/none.pth", "--out", "{tmp}/m"], sam_checkpoint, 2,
         r"none\.pth"),
    Case("sam-weights-evil-pickle", ["sam", G, "--model", "test_sam_tiny", "--weights",
                                     "{tmp}/evil.pth", "--out", "{tmp}/m"], sam_checkpoint, 2,
         r"evil\.pth: refused", must_be_unchanged=("evil.pth",)),
    Case("sam-weights-zip", ["sam", G, "--model", "test_sam_tiny", "--weights",
                             "{tmp}/archive.pt", "--out", "{tmp}/m"], sam_checkpoint, 2,
         r"archive\.pt"),
    Case("sam-points-per-side-0", ["sam", G, *SAM, "--points-per-side", "0", "--out",
                                   "{tmp}/m"], sam_checkpoint, 2,
         r"argument --points-per-side: must be at least 1"),
    Case("sam-iou-thresh-2", ["sam", G, *SAM, "--pred-iou-thresh", "2", "--out", "{tmp}/m"],
         sam_checkpoint, 2, r"pred_iou_thresh"),
    Case("sam-nms-nan", ["sam", G, *SAM, "--box-nms-thresh", "nan", "--out", "{tmp}/m"],
         sam_checkpoint, 2, r"box_nms_thresh must lie in \[0, 1\], got nan"),
    Case("sam-crop-layers-negative", ["sam", G, *SAM, "--crop-n-layers", "-1", "--out",
                                      "{tmp}/m"], sam_checkpoint, 2, r"must be >= 0"),
    Case("sam-boxes-coco-ids-lists", ["sam", G, *SAM, "--boxes", "{tmp}/listids.json", "--out",
                                      "{tmp}/m"], sam_checkpoint, 2,
         r"field 'id' must be a number or a string"),
    Case("sam-boxes-deep-json", ["sam", G, *SAM, "--boxes", "{tmp}/deep.json", "--out",
                                 "{tmp}/m"], sam_checkpoint, 2, r"nested too deeply"),
    Case("sam-boxes-csv-field-over-128kb", ["sam", G, *SAM, "--boxes", "{tmp}/big.csv",
                                            "--out", "{tmp}/m"], sam_checkpoint, 2,
         r"big\.csv: line \d+: not a valid CSV box file"),
    Case("sam-boxes-xml-bomb", ["sam", G, *SAM, "--boxes", "{tmp}/bomb.xml", "--out",
                                "{tmp}/m"], sam_checkpoint, 2, r"refused: unsafe XML"),
    Case("sam-boxes-outside", ["sam", G, *SAM, "--boxes", "{tmp}/outside.json", "--out",
                               "{tmp}/m"], sam_checkpoint, 0, r"lies outside", one_line=False),
    Case("sam-same-file-name", ["sam", G, "{tmp}/folder_out/good.png", *SAM, "--out",
                                "{tmp}/m"],
         lambda t: (sam_checkpoint(t), good_image(t / "folder_out")), 2,
         r"two inputs share the file name good\.png"),
    Case("sam-slurm-without-sbatch", ["sam", G, *SAM, "--runner", "slurm", "--out", "{tmp}/m"],
         sam_checkpoint, 2, r"SLURM is not available here|submitit"),
]

SG = ["segment", G, "--quiet"]
SCR = ["--scribbles", "{tmp}/good_scr.tif"]


def _p(name):
    return ["segment", G, "--probe", "{tmp}/" + name, "--out", "{tmp}/s", "--quiet"]


SEGMENT = [
    Case("segment-trees-0", [*SG, *SCR, "--trees", "0", "--out", "{tmp}/s"], probe_files, 2,
         r"argument --trees: must be at least 1"),
    Case("segment-stride-0", [*SG, *SCR, "--stride", "0", "--out", "{tmp}/s"], probe_files, 2,
         r"argument --stride: must be at least 1"),
    Case("segment-size-negative", [*SG, *SCR, "--size", "-5", "--out", "{tmp}/s"], probe_files,
         2, r"argument --size: must be at least 1"),
    Case("segment-scale-nan", [*SG, *SCR, "--features", "patch", "--scale", "nan", *TINY[:4],
                               "--out", "{tmp}/s"], probe_files, 2, r"scale .* must lie in"),
    Case("segment-crf-nan", [*SG, *SCR, "--crf", "--crf-gaussian-sxy", "nan", "--out",
                             "{tmp}/s"], probe_files, 2, r"CRF gaussian_sxy must be positive"),
    Case("segment-names-garbage", [*SG, *SCR, "--names", "85", "--out", "{tmp}/s"], probe_files,
         2, r"--names: expected VALUE=NAME pairs"),
    Case("segment-out-is-a-file", [*SG, *SCR, "--out", G], probe_files, 2,
         r"--out .*good\.png is a file; give a folder", must_be_unchanged=("good.png",)),
    Case("segment-scribbles-empty-file", [*SG, "--scribbles", "{tmp}/empty.png", "--out",
                                          "{tmp}/s"], probe_files, 2,
         r"empty\.png: the file is empty"),
    Case("segment-scribbles-wrong-shape", [*SG, "--scribbles", "{tmp}/one.png", "--out",
                                           "{tmp}/s"], probe_files, 2,
         r"scribbles must cover the image pixel for pixel"),
    Case("segment-scribbles-float-nan", ["segment", "{tmp}/nan.tif", "--scribbles",
                                         "{tmp}/nan.tif", "--out", "{tmp}/s", "--quiet"],
         probe_files, 2, r"labels must be whole numbers"),
    Case("segment-odd-images-with-probe",
         ["segment", "{tmp}/empty.png", "{tmp}/trunc.png", "{tmp}/five.tif", "{tmp}/one.png",
          "--probe", "{tmp}/probe.npz", "--out", "{tmp}/s", "--quiet"], probe_files, 1,
         r"skipped trunc\.png: .*truncated", one_line=False),
    Case("segment-save-probe-with-probe", [*_p("probe.npz"), "--save-probe", "{tmp}/x.npz"],
         probe_files, 2, r"--save-probe saves a probe trained from --scribbles"),
    Case("segment-probe-missing", _p("none.npz"), probe_files, 2, r"none\.npz: no such probe"),
    Case("segment-probe-an-image", ["segment", G, "--probe", "{tmp}/trunc.png", "--out",
                                    "{tmp}/s"], probe_files, 2, r"trunc\.png: not a probe file"),
    Case("segment-probe-not-a-zip", _p("notzip.npz"), probe_files, 2, r"notzip\.npz"),
    Case("segment-probe-evil-pickle", _p("evil.npz"), probe_files, 2, r"evil\.npz"),
    Case("segment-probe-meta-list", _p("meta_list.npz"), probe_files, 2,
         r"meta_list\.npz: not a napari-dinoseg probe"),
    Case("segment-probe-meta-null", _p("meta_null.npz"), probe_files, 2,
         r"meta_null\.npz: not a napari-dinoseg probe"),
    Case("segment-probe-meta-deep", _p("meta_deep.npz"), probe_files, 2,
         r"meta_deep\.npz: probe metadata is not valid JSON"),
    Case("segment-probe-dim-null", _p("dim_null.npz"), probe_files, 2, r"meta\.feature_dim"),
    # a number written as text: a damaged or hand-made file, refused (no lax conversion)
    Case("segment-probe-dim-string", _p("dim_str.npz"), probe_files, 2,
         r"meta\.feature_dim: Input should be a valid integer"),
    Case("segment-probe-dim-huge", _p("dim_huge.npz"), probe_files, 2, r"meta\.feature_dim"),
    Case("segment-probe-sigmas-1e6", _p("sigmas.npz"), probe_files, 2,
         r"feature_options\.sigmas"),
    Case("segment-probe-class-value-negative", _p("class_neg.npz"), probe_files, 2,
         r"class_values"),
    Case("segment-probe-class-names-ints", _p("names_int.npz"), probe_files, 2,
         r"class_names"),
    Case("segment-probe-classifier-list", _p("kind_list.npz"), probe_files, 2, r"classifier"),
    Case("segment-probe-mode-unknown", _p("mode_bad.npz"), probe_files, 2,
         r"meta\.feature_mode"),
    Case("segment-probe-nan-weights", _p("nan_weight.npz"), probe_files, 2,
         r"'weight' holds NaN"),
    Case("segment-probe-oversized-array", _p("big_weight.npz"), probe_files, 2,
         r"array 'weight' holds .* bytes"),
    Case("segment-probe-extra-huge-array-ignored", _p("extra.npz"), probe_files, 0, r""),
    Case("segment-probe-classifier-mismatch", [*_p("probe.npz"), "--classifier", "rf"],
         probe_files, 2, r"--classifier rf: the probe is a linear"),
    Case("segment-runner-without-probe", [*SG, *SCR, "--runner", "local", "--out", "{tmp}/s"],
         probe_files, 2, r"--runner applies a saved probe"),
    Case("segment-slurm-without-sbatch", [*_p("probe.npz"), "--runner", "slurm"], probe_files,
         2, r"SLURM is not available here|submitit"),
    Case("segment-shards-more-than-images", [*_p("probe.npz"), "--runner", "local", "--shards",
                                             "4"], probe_files, 2, r"--shards 4 for 1 image"),
]

ATTN = [
    Case("attention-maps-no-such-input", ["attention-maps", "{tmp}/nowhere", *TINY],
         odd_images, 2, r"nowhere: no such file or folder"),
    Case("attention-maps-batch-size-0", ["attention-maps", G, *TINY, "--batch-size", "0"],
         odd_images, 2, r"argument --batch-size: must be at least 1"),
    Case("attention-maps-size-negative", ["attention-maps", G, *TINY, "--size", "-5"],
         odd_images, 2, r"argument --size: must be at least 1"),
    Case("attention-maps-device-tpu9", ["attention-maps", G, *TINY, "--device", "tpu9"],
         odd_images, 2, r"unknown device 'tpu9'"),
    Case("attention-maps-one-bad-file-skipped",
         ["attention-maps", G, "{tmp}/trunc.png", "{tmp}/empty.png", *TINY, "--size", "32",
          "--cache-dir", "{tmp}/cache"], odd_images, 1, r"no map: .*trunc\.png",
         one_line=False),
    Case("attention-maps-evil-weights", ["attention-maps", G, "--backbone", "test_dino_tiny16",
                                         "--weights", "{tmp}/evil.pt", "--quiet"],
         weights_files, 2, r"evil\.pt"),
]

TRAIN = [
    Case("train-unknown-field", ["train", "{tmp}/unknown.yaml", "--runs-root", "{tmp}/runs"],
         train_env, 2, r"colour: unknown field"),
    Case("train-typo", ["train", "{tmp}/typo.yaml", "--runs-root", "{tmp}/runs"], train_env, 2,
         r"num_epoch: unknown field \(did you mean 'num_epochs'\?\)"),
    Case("train-wrong-type", ["train", "{tmp}/types.yaml", "--runs-root", "{tmp}/runs"],
         train_env, 2, r"num_epochs"),
    Case("train-yaml-a-list", ["train", "{tmp}/list.yaml", "--runs-root", "{tmp}/runs"],
         train_env, 2, r"a spec is a mapping of fields, got list"),
    Case("train-yaml-broken", ["train", "{tmp}/bad.yaml", "--runs-root", "{tmp}/runs"],
         train_env, 2, r"bad\.yaml: not valid YAML"),
    Case("train-yaml-deeply-nested", ["train", "{tmp}/deep.yaml", "--runs-root", "{tmp}/runs"],
         train_env, 2, r"deep\.yaml: YAML nested too deeply"),
    Case("train-spec-missing", ["train", "{tmp}/none.yaml"], train_env, 2,
         r"none\.yaml: no such spec file"),
    Case("train-spec-a-folder", ["train", "{tmp}/ds"], train_env, 2, r"ds: no such spec file"),
    Case("train-override-typo", ["train", "{tmp}/spec.yaml", "--set", "opt.lrr=0.1"], train_env,
         2, r"opt\.lrr: unknown field \(did you mean 'opt\.lr'\?\)"),
    Case("train-override-wrong-type", ["train", "{tmp}/spec.yaml", "--set", "opt.lr=fast"],
         train_env, 2, r"opt\.lr"),
    Case("train-override-no-equals", ["train", "{tmp}/spec.yaml", "--set", "opt.lr"], train_env,
         2, r"opt\.lr"),
    Case("train-device-tpu9", ["train", "{tmp}/spec.yaml", "--set", "device=tpu9"], train_env, 2,
         r"tpu9"),
    Case("train-slurm-without-sbatch", ["train", "{tmp}/spec.yaml", "--runner", "slurm",
                                        "--runs-root", "{tmp}/runs"], train_env, 2,
         r"SLURM is not available here|submitit"),
    Case("train-data-missing", ["train", "{tmp}/spec.yaml", "--set", "data.root={tmp}/none",
                                "--dry-run"], train_env, 2, r"none"),
]

RUNS = [
    Case("runs-show-unknown", ["runs", "--runs-root", "{tmp}/runs", "show", "nope"],
         fake_training_run, 2, r"no run 'nope'"),
    Case("runs-show-not-a-run", ["runs", "show", "{tmp}/notarun"], fake_training_run, 2,
         r"notarun is not a run folder"),
    Case("runs-resume-unknown", ["runs", "--runs-root", "{tmp}/runs", "resume", "nope"],
         fake_training_run, 2, r"no run 'nope'"),
    Case("runs-cancel-unknown", ["runs", "--runs-root", "{tmp}/runs", "cancel", "nope"],
         fake_training_run, 2, r"no run 'nope'"),
    Case("runs-resume-slurm-without-sbatch",
         ["runs", "--runs-root", "{tmp}/runs", "resume", "2024", "--runner", "slurm"],
         fake_training_run, 2, r"SLURM|submitit|nothing to resume|never started|checkpoint"),
    Case("batch-merge-of-a-training-run", ["batch-merge", "2024", "--runs-root", "{tmp}/runs"],
         fake_training_run, 2, r"is a classifier run, not a batch run",
         must_be_unchanged=("runs/20240101-000000-classifier-x/config.yaml",)),
    Case("batch-merge-unknown", ["batch-merge", "nope", "--runs-root", "{tmp}/runs"],
         fake_training_run, 2, r"no run 'nope'"),
    Case("evaluate-unknown-run", ["evaluate", "nope", "--runs-root", "{tmp}/runs"],
         fake_training_run, 2, r"no run 'nope'"),
    Case("evaluate-out-is-a-folder", ["evaluate", "2024", "--runs-root", "{tmp}/runs", "--out",
                                      "{tmp}/notarun"], fake_training_run, 2,
         r"--out .*notarun is a folder"),
    Case("evaluate-not-an-fgvc-run", ["evaluate", "2024", "--runs-root", "{tmp}/runs",
                                      "--quiet"], fake_training_run, 2, r"fgvc|classifier"),
    Case("predict-top-0", ["predict", "2024", G, "--top", "0"], fake_training_run, 2,
         r"argument --top: must be at least 1"),
    Case("predict-unknown-run", ["predict", "nope", G, "--runs-root", "{tmp}/runs"],
         lambda t: (fake_training_run(t), odd_images(t)), 2, r"no run 'nope'"),
    Case("predict-out-is-a-folder", ["predict", "2024", G, "--runs-root", "{tmp}/runs",
                                     "--out", "{tmp}/notarun"],
         lambda t: (fake_training_run(t), odd_images(t)), 2, r"--out .*notarun is a folder"),
]

SSL = [
    Case("eval-knn-no-data", ["eval-knn", "{tmp}/none", *TINY], ssl_data, 2, r"none"),
    Case("eval-knn-k-0", ["eval-knn", "{tmp}/data", *TINY, "--k", "0"], ssl_data, 2,
         r"argument --k: must be at least 1"),
    Case("eval-knn-size-negative", ["eval-knn", "{tmp}/data", *TINY, "--size", "-5"], ssl_data,
         2, r"argument --size: must be at least 1"),
    Case("eval-knn-out-is-a-folder", ["eval-knn", "{tmp}/data", *TINY, "--out", "{tmp}/out_dir"],
         ssl_data, 2, r"--out .*out_dir is a folder"),
    Case("eval-knn-device-tpu9", ["eval-knn", "{tmp}/data", *TINY, "--device", "tpu9"],
         ssl_data, 2, r"tpu9"),
    Case("eval-linear-no-data", ["eval-linear", "{tmp}/nothing", *TINY], ssl_data, 2,
         r"nothing"),
    Case("eval-linear-out-is-a-folder", ["eval-linear", "{tmp}/data", *TINY, "--out",
                                         "{tmp}/out_dir"], ssl_data, 2, r"is a folder"),
    Case("label-sweep-no-data", ["label-sweep", "{tmp}/none", *TINY], ssl_data, 2, r"none"),
    Case("label-sweep-budget-too-big", ["label-sweep", "{tmp}/data", *TINY, "--budgets",
                                        "1000"], ssl_data, 2, r"1000|budget"),
    Case("label-sweep-budget-negative", ["label-sweep", "{tmp}/data", *TINY, "--budgets",
                                         "-1"], ssl_data, 2, r"-1|budget"),
    Case("label-sweep-csv-is-a-folder", ["label-sweep", "{tmp}/data", *TINY, "--csv",
                                         "{tmp}/out_dir"], ssl_data, 2, r"--csv .* is a folder"),
    Case("embed-no-images", ["embed", "{tmp}/nothing", *TINY], ssl_data, 2, r"nothing|image"),
    Case("embed-no-such-folder", ["embed", "{tmp}/none", *TINY], ssl_data, 2, r"none"),
    Case("embed-k-0", ["embed", "{tmp}/data/train", *TINY, "--k", "0"], ssl_data, 2,
         r"argument --k: must be at least 1"),
    Case("embed-png-is-a-folder", ["embed", "{tmp}/data/train", *TINY, "--png",
                                   "{tmp}/out_dir"], ssl_data, 2, r"--png .* is a folder"),
]

OTHER = [
    Case("qc-not-a-folder", ["qc", G], odd_images, 2, r"good\.png: not a folder"),
    Case("qc-out-is-a-folder", ["qc", "{tmp}", "--out", "{tmp}"], odd_images, 2,
         r"--out .* is a folder; give a file name"),
    Case("qc-verify-unknown-image", ["qc", "{tmp}", "--verify", "nope.png", "--task", "boxes"],
         odd_images, 2, r"nope\.png: not an image of"),
    Case("qc-verify-without-task", ["qc", "{tmp}", "--verify", "good.png"], odd_images, 2,
         r"--verify needs exactly one --task"),
    Case("qc-top-0", ["qc", "{tmp}", "--top", "0"], odd_images, 2,
         r"argument --top: must be at least 1"),
    # unknown options: named by their sub-command, with where to look
    Case("backbones-unknown-option", ["backbones", "--jsn"], None, 2,
         r"^dinoseg backbones: error: unrecognized arguments: --jsn \(see: dinoseg backbones "
         r"--help\)$"),
]

READ_ONLY = [
    Case("segment-read-only-image-folder",
         ["segment", "{tmp}/ro/good.png", "--scribbles", "{tmp}/good_scr.tif", "--out",
          "{tmp}/s", "--quiet"], readonly_project, 0, r""),
    Case("boxes-project-read-only-folder",
         ["boxes", "{tmp}/ro/good.png", "--method", "lost", *TINY, "--project", "--out",
          "{tmp}/b.json"], readonly_project, 0, r""),
]

ROWS = [*FEATURES, *BOXES, *EXPORT, *EVAL_BOXES, *SAM_ROWS, *SEGMENT, *ATTN, *TRAIN, *RUNS,
        *SSL, *OTHER, *READ_ONLY]


# --------------------------------------------------------------------------------------------
# running one row


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _call(argv: list[str]) -> int:
    try:
        return int(main(argv) or 0)
    except SystemExit as exc:  # argparse refusals
        return int(exc.code or 0)


def test_every_command_has_rows():
    from headless.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    covered = {c.argv[0] for c in ROWS}
    assert set(sub.choices) <= covered, set(sub.choices) - covered


@pytest.mark.parametrize("case", ROWS, ids=[c.id for c in ROWS])
def test_hostile_input(case: Case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DINOSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DINOSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DINOSEG_TRACEBACK", raising=False)
    monkeypatch.chdir(tmp_path)
    if case.setup is not None:
        wants_monkeypatch = len(inspect.signature(case.setup).parameters) > 1
        case.setup(tmp_path, monkeypatch) if wants_monkeypatch else case.setup(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in case.argv]
    before = {p: _digest(tmp_path / p) for p in case.must_be_unchanged}
    capsys.readouterr()
    code = _call(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == case.exit_code, err
    assert re.search(case.message, err, re.M), err
    if code == 2 and case.one_line:
        prefix = f"dinoseg {argv[0]}" if argv[0] != "runs" else "dinoseg runs"
        lines = err.rstrip("\n").split("\n")
        errors = [ln for ln in lines if re.match(rf"{prefix}( \w+)?: error: ", ln)]
        assert len(errors) == 1 and lines[-1] == errors[0], err
        assert not any(ln.startswith(("usage:", " ")) for ln in lines), err  # no usage dump
        assert re.search(case.message, errors[0]), err
    for p, digest in before.items():
        assert _digest(tmp_path / p) == digest, f"{p} was changed"
    for p in case.must_not_exist:
        assert not (tmp_path / p).exists(), f"{p} exists: pickled code ran"
