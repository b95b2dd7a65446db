"""Fine-grained datasets as users download them, read into train / val / test splits.

Layouts: an ImageFolder (``root/train`` + ``root/test`` [+ ``root/val``], or ``data.test_root``);
``CUB_200_2011`` (``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
``classes.txt``, ``images/``); Oxford Flowers-102 (``imagelabels.mat``, ``setid.mat``,
``jpg/image_00001.jpg``; its own train / val / test ids); Stanford Dogs (``train_list.mat``,
``test_list.mat``, ``Images/``). ``layout: auto`` recognises them by these files. Where a layout
has no validation split, a seeded stratified ``val_fraction`` of the training images is held
out. Everything wrong (unrecognised layout, no test split, a class with one training image,
missing image files) is an error that names it, before a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headless.train.data.errors import DatasetError

Sample = tuple[Path, int]


@dataclass
class FgvcSplits:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    layout: str
    roots: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"layout": self.layout, "n_classes": len(self.classes), "n_train": len(self.train),
                "n_val": len(self.val), "n_test": len(self.test)}


def detect_layout(root: Path) -> str:
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    if (root / "images.txt").is_file() and (root / "train_test_split.txt").is_file():
        return "cub"
    if (root / "imagelabels.mat").is_file() and (root / "setid.mat").is_file():
        return "flowers102"
    if (root / "train_list.mat").is_file() and (root / "test_list.mat").is_file():
        return "dogs"
    if (root / "train").is_dir():
        return "imagefolder"
    raise DatasetError(
        f"{root}: dataset layout not recognised: expected an ImageFolder with train/ and test/ "
        "sub-folders, CUB_200_2011 (images.txt, train_test_split.txt), Oxford Flowers-102 "
        "(imagelabels.mat, setid.mat) or Stanford Dogs (train_list.mat, test_list.mat)"
    )


def _read_table(path: Path) -> dict[int, str]:
    if not path.is_file():
        raise DatasetError(f"{path.parent}: {path.name} is missing")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DatasetError(f"{path}:{n}: expected 'id value', got {line!r}")
            out[int(parts[0])] = parts[1].strip()
    return out


def read_cub(root: Path) -> tuple[list[str], list[Sample], list[Sample]]:
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    images = _read_table(root / "images.txt")
    labels = {k: int(v) for k, v in _read_table(root / "image_class_labels.txt").items()}
    is_train = {k: v == "1" for k, v in _read_table(root / "train_test_split.txt").items()}
    ids = sorted(set(labels) | set(is_train))
    if (root / "classes.txt").is_file():
        names = _read_table(root / "classes.txt")
    else:
        names = {labels[i]: images[i].split("/")[0] for i in images if i in labels}
    class_ids = sorted(names)
    index = {c: j for j, c in enumerate(class_ids)}
    train, test = [], []
    for i in ids:
        if i not in images or i not in labels or i not in is_train:
            raise DatasetError(f"{root}: image id {i} is not in all of images.txt, "
                               "image_class_labels.txt and train_test_split.txt")
        item = (root / "images" / images[i], index[labels[i]])
        (train if is_train[i] else test).append(item)
    return [names[c] for c in class_ids], train, test


def _mat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise DatasetError(f"{path.parent}: {path.name} is missing")
    try:
        return loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable .mat is reported by name
        raise DatasetError(f"{path}: not a readable .mat file ({exc})") from None


def read_flowers(root: Path) -> tuple[list[str], list[Sample], list[Sample], list[Sample]]:
    labels = np.asarray(_mat(root / "imagelabels.mat")["labels"]).reshape(-1).astype(int)
    setid = _mat(root / "setid.mat")
    classes = [f"{c:03d}" for c in range(1, int(labels.max()) + 1)]
    folder = root / "jpg" if (root / "jpg").is_dir() else root

    def items(key: str) -> list[Sample]:
        ids = np.asarray(setid[key]).reshape(-1).astype(int)
        return [(folder / f"image_{i:05d}.jpg", int(labels[i - 1]) - 1) for i in sorted(ids)]

    return classes, items("trnid"), items("valid"), items("tstid")


def _strings(cells: Any) -> list[str]:
    out = []
    for c in np.asarray(cells, dtype=object).reshape(-1):
        while isinstance(c, np.ndarray):
            c = c.reshape(-1)[0]
        out.append(str(c))
    return out


def read_dogs(root: Path) -> tuple[list[str], list[Sample], list[Sample]]:
    folder = root / "Images" if (root / "Images").is_dir() else root
    lists = {}
    for name in ("train", "test"):
        m = _mat(root / f"{name}_list.mat")
        files = _strings(m["file_list"])
        labels = np.asarray(m["labels"]).reshape(-1).astype(int)
        lists[name] = list(zip(files, labels))
    names: dict[int, str] = {}
    for f, lab in lists["train"] + lists["test"]:
        names.setdefault(int(lab), f.split("/")[0])
    ids = sorted(names)
    index = {c: j for j, c in enumerate(ids)}
    train = [(folder / f, index[int(lab)]) for f, lab in lists["train"]]
    test = [(folder / f, index[int(lab)]) for f, lab in lists["test"]]
    return [names[c] for c in ids], train, test


def split_val(train: list[Sample], n_classes: int, fraction: float, seed: int
              ) -> tuple[list[Sample], list[Sample]]:
    """Seeded stratified hold-out: ``fraction`` of each class (>= 1), always leaving two or more
    training images (a triplet needs an anchor and a positive); smaller classes keep all."""
    if fraction <= 0:
        return train, []
    rng = np.random.default_rng(seed)
    keep, val = [], []
    for label in range(n_classes):
        items = [s for s in train if s[1] == label]
        order = rng.permutation(len(items))
        n_val = min(max(int(round(fraction * len(items))), 1), len(items) - 2) \
            if len(items) >= 3 else 0
        val += [items[i] for i in sorted(order[:n_val])]
        keep += [items[i] for i in sorted(order[n_val:])]
    return keep, val


def read_splits(data: Any, seed: int = 0) -> FgvcSplits:
    """Train / val / test of ``data`` (the spec's ``data`` section); raises DatasetError."""
    from headless.train.data.folders import scan_image_folder

    if not data.root:
        raise DatasetError("data.root is empty: choose the dataset folder")
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    layout = detect_layout(root) if data.layout == "auto" else data.layout
    val: list[Sample] | None = None
    if layout == "imagefolder":
        train_dir = root / "train" if (root / "train").is_dir() else root
        tr = scan_image_folder(train_dir)
        classes, train = tr.classes, tr.samples
        test_dir = Path(data.test_root).expanduser() if data.test_root else root / "test"
        if not test_dir.is_dir():
            raise DatasetError(f"no test split: {test_dir} does not exist (add root/test with "
                               "one sub-folder per class, or set data.test_root)")
        test = scan_image_folder(test_dir, classes=classes).samples
        if (root / "val").is_dir():
            val = scan_image_folder(root / "val", classes=classes).samples
    elif layout == "cub":
        classes, train, test = read_cub(root)
    elif layout == "flowers102":
        classes, train, val, test = read_flowers(root)
    elif layout == "dogs":
        classes, train, test = read_dogs(root)
    else:
        raise DatasetError(f"data.layout: unknown layout {layout!r}")
    if not test:
        raise DatasetError(f"{root}: the {layout} layout has no test images: a held-out test "
                           "split is needed")
    if val is None:
        train, val = split_val(train, len(classes), data.val_fraction, seed)
        counts = np.bincount([s[1] for s in train + val], minlength=len(classes))
    else:
        counts = np.bincount([s[1] for s in train], minlength=len(classes))
    few = [classes[i] for i, c in enumerate(counts) if c < 2]
    if few:
        shown = ", ".join(repr(c) for c in few[:5]) + (" ..." if len(few) > 5 else "")
        raise DatasetError(f"{len(few)} class(es) with fewer than two training images ({shown}): "
                           "every class needs two or more (triplets, and a held-out image)")
    missing = [p for p, _ in train + val + test if not p.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} image file(s) listed by the {layout} layout are "
                           f"missing, e.g. {missing[0]}")
    return FgvcSplits(classes, train, val, test, layout, [root])
