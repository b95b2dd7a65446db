"""Labelled train / val ImageFolders for evaluation, with their classes checked to agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headless.train.data.errors import DatasetError


@dataclass
class Labelled:
    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]


def load_labelled(root: str | Path | None = None, train: str | Path | None = None,
                  val: str | Path | None = None) -> Labelled:
    """``root/train`` + ``root/val``, or explicit ``train`` / ``val`` folders (ImageFolders).

    Train and val must hold the same classes: a class missing on either side would make the
    accuracy silently mean something else, so it is refused with both lists named.
    """
    from headless.train.data.folders import scan_image_folder

    if root is not None:
        root = Path(root).expanduser()
        train = train or root / "train"
        val = val or root / "val"
        for name, p in (("train", train), ("val", val)):
            if not Path(p).is_dir():
                raise DatasetError(f"{root} has no {name}/ folder: a labelled set is "
                                   "root/train/<class>/... and root/val/<class>/...")
    if train is None or val is None:
        raise DatasetError("give a labelled folder with train/ and val/, or both folders")
    tr = scan_image_folder(train)
    va_classes = sorted(d.name for d in Path(val).expanduser().iterdir()
                        if d.is_dir() and not d.name.startswith(".")) \
        if Path(val).expanduser().is_dir() else []
    va = scan_image_folder(val, classes=sorted(set(tr.classes) | set(va_classes)))
    present = sorted({va.classes[lab] for _, lab in va.samples})
    if present != tr.classes:
        only_train = sorted(set(tr.classes) - set(present))
        only_val = sorted(set(present) - set(tr.classes))
        raise DatasetError(
            f"the classes of train ({train}) and val ({val}) differ: only in train: "
            f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'}")
    return Labelled(tr.classes, tr.samples, va.samples)
