"""An ImageFolder (one sub-folder per class) indexed, and split into training and validation.

Everything that can be wrong with the folder is found here before a worker starts: a missing or
empty folder, loose images without class folders, a single class, validation classes that the
training set lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headless.images import IMAGE_SUFFIXES
from headless.train.data.errors import DatasetError


@dataclass
class FolderIndex:
    """Images of an ImageFolder, sorted, with their class index."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for _, label in self.samples:
            out[self.classes[label]] += 1
        return out


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def scan_image_folder(root: str | Path, classes: list[str] | None = None) -> FolderIndex:
    """Index ``root/<class>/**/<image>``; with ``classes``, labels follow that list (val sets)."""
    root = Path(root).expanduser()
    if not str(root) or not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} is a file, not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    per_class = {d.name: _images_under(d) for d in class_dirs}
    per_class = {k: v for k, v in per_class.items() if v}
    if not per_class:
        if loose:
            raise DatasetError(
                f"{root} holds {len(loose)} images but no class sub-folders: an ImageFolder "
                "has one sub-folder per class (root/cat/1.jpg, root/dog/2.jpg)"
            )
        raise DatasetError(
            f"no images found in {root} (looked for {', '.join(IMAGE_SUFFIXES)} files in "
            "one sub-folder per class)"
        )
    if classes is None:
        classes = sorted(per_class)
        if len(classes) < 2:
            raise DatasetError(
                f"only one class ({classes[0]!r}) in {root}: a classifier needs at least two "
                "sub-folders of images, one per class"
            )
    else:
        extra = sorted(set(per_class) - set(classes))
        if extra:
            raise DatasetError(
                f"{root} has classes that the training set lacks: {', '.join(extra[:10])}"
            )
    index = {c: i for i, c in enumerate(classes)}
    samples = [(p, index[c]) for c in classes for p in per_class.get(c, [])]
    return FolderIndex(root=root, classes=list(classes), samples=samples)


@dataclass
class Split:
    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    roots: list[Path] = field(default_factory=list)
    how: str = ""


def _has_class_dirs(p: Path) -> bool:
    return p.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in p.iterdir())


def make_split(data: Any, seed: int) -> Split:
    """Train / validation images: ``val_root``, else ``root/train`` + ``root/val``, else a split.

    The split is stratified (``val_fraction`` of every class, at least one image of a class with
    two or more) and seeded, so it is the same on every resume and every rank.
    """
    if not data.root:
        raise DatasetError(
            "data.root is empty: choose the dataset folder (one sub-folder per class)"
        )
    root = Path(data.root).expanduser()
    if data.val_root:
        train = scan_image_folder(root)
        val = scan_image_folder(data.val_root, classes=train.classes)
        return Split(train.classes, train.samples, val.samples, [root, val.root], "val_root")
    if (root / "train").is_dir() and (root / "val").is_dir() and _has_class_dirs(root / "train") \
            and _has_class_dirs(root / "val"):
        train = scan_image_folder(root / "train")
        val = scan_image_folder(root / "val", classes=train.classes)
        return Split(train.classes, train.samples, val.samples, [root, root / "train",
                                                                  root / "val"], "train/val")
    full = scan_image_folder(root)
    if data.val_fraction <= 0:
        return Split(full.classes, full.samples, [], [root], "no validation")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(len(full.classes)):
        items = [s for s in full.samples if s[1] == label]
        order = rng.permutation(len(items))
        n_val = int(round(data.val_fraction * len(items)))
        if len(items) >= 2:
            n_val = min(max(n_val, 1), len(items) - 1)
        else:
            n_val = 0
        val += [items[i] for i in sorted(order[:n_val])]
        train += [items[i] for i in sorted(order[n_val:])]
    return Split(full.classes, train, val, [root], f"split {data.val_fraction:.0%}")
