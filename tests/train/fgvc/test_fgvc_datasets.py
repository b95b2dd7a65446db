"""Dataset readers on tiny generated copies of the downloaded layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headless.train.data.errors import DatasetError
from headless.train.fgvc.datasets import detect_layout, read_splits
from headless.train.fgvc.spec import FgvcDataConfig


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def _data(root: Path, **kw) -> FgvcDataConfig:
    return FgvcDataConfig(root=str(root), **kw)


def make_cub(root: Path) -> Path:
    cub = root / "CUB_200_2011"
    names = {1: "001.Albatross", 2: "002.Auklet"}
    rows, labels, split = [], [], []
    for i in range(1, 9):
        c = 1 if i <= 4 else 2
        rel = f"{names[c]}/img_{i}.jpg"
        _img(cub / "images" / rel)
        rows.append(f"{i} {rel}")
        labels.append(f"{i} {c}")
        split.append(f"{i} {0 if i in (4, 8) else 1}")
    (cub / "images.txt").write_text("\n".join(rows) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (cub / "classes.txt").write_text("1 001.Albatross\n2 002.Auklet\n")
    return root


def test_cub_layout(tmp_path):
    root = make_cub(tmp_path)
    assert detect_layout(root) == "cub"
    s = read_splits(_data(root, val_fraction=0.0))
    assert s.classes == ["001.Albatross", "002.Auklet"] and s.layout == "cub"
    assert [p.name for p, _ in s.test] == ["img_4.jpg", "img_8.jpg"]
    assert [y for _, y in s.test] == [0, 1] and len(s.train) == 6 and not s.val
    s = read_splits(_data(root, val_fraction=0.34), seed=3)
    assert len(s.val) == 2 and {y for _, y in s.val} == {0, 1} and len(s.train) == 4
    assert not set(s.val) & set(s.train)


def test_flowers_layout(tmp_path):
    from scipy.io import savemat

    labels = np.array([[1, 1, 1, 2, 2, 2, 3, 3, 3, 1, 2, 3]])
    for i in range(1, 13):
        _img(tmp_path / "jpg" / f"image_{i:05d}.jpg")
    savemat(tmp_path / "imagelabels.mat", {"labels": labels})
    savemat(tmp_path / "setid.mat", {"trnid": np.array([[1, 2, 4, 5, 7, 8]]),
                                     "valid": np.array([[3, 6]]),
                                     "tstid": np.array([[9, 10, 11, 12]])})
    assert detect_layout(tmp_path) == "flowers102"
    s = read_splits(_data(tmp_path))
    assert s.classes == ["001", "002", "003"]
    assert [(p.name, y) for p, y in s.val] == [("image_00003.jpg", 0), ("image_00006.jpg", 1)]
    assert [y for _, y in s.test] == [2, 0, 1, 2] and len(s.train) == 6


def test_dogs_layout(tmp_path):
    from scipy.io import savemat

    def lst(files, labels):
        cells = np.empty((len(files), 1), dtype=object)
        for i, f in enumerate(files):
            cells[i, 0] = np.array([f])
        return {"file_list": cells, "labels": np.array(labels).reshape(-1, 1)}

    tr = ["n1-Chihuahua/a.jpg", "n1-Chihuahua/b.jpg", "n2-Pug/c.jpg", "n2-Pug/d.jpg"]
    te = ["n1-Chihuahua/e.jpg", "n2-Pug/f.jpg"]
    for f in tr + te:
        _img(tmp_path / "Images" / f)
    savemat(tmp_path / "train_list.mat", lst(tr, [1, 1, 2, 2]))
    savemat(tmp_path / "test_list.mat", lst(te, [1, 2]))
    assert detect_layout(tmp_path) == "dogs"
    s = read_splits(_data(tmp_path, val_fraction=0.0))
    assert s.classes == ["n1-Chihuahua", "n2-Pug"]
    assert [(p.name, y) for p, y in s.test] == [("e.jpg", 0), ("f.jpg", 1)]


def test_imagefolder_with_val_and_test(tmp_path):
    for split in ("train", "val", "test"):
        for c in ("a", "b"):
            for i in range(3 if split == "train" else 1):
                _img(tmp_path / split / c / f"{i}.png")
    s = read_splits(_data(tmp_path))
    assert s.layout == "imagefolder" and len(s.train) == 6 and len(s.val) == 2
    assert len(s.test) == 2 and s.classes == ["a", "b"]


def test_missing_files_and_tables_are_named(tmp_path):
    root = make_cub(tmp_path)
    (root / "CUB_200_2011" / "images" / "002.Auklet" / "img_8.jpg").unlink()
    with pytest.raises(DatasetError, match="1 image file.* missing, e.g. .*img_8.jpg"):
        read_splits(_data(root))
    (root / "CUB_200_2011" / "image_class_labels.txt").unlink()
    with pytest.raises(DatasetError, match="image_class_labels.txt is missing"):
        read_splits(_data(root, layout="cub"))
