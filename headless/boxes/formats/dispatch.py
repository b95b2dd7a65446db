"""Any box file by its path: the format from the extension, then the COCO / VOC / CSV module."""

from __future__ import annotations

from pathlib import Path

from headless.boxes.formats.coco import read_coco, write_coco
from headless.boxes.formats.common import BoxFormatError
from headless.boxes.formats.csvfile import read_csv, write_csv
from headless.boxes.formats.voc import read_voc, write_voc, write_voc_file
from headless.boxes.types import BoxSet


def detect_format(path: str | Path) -> str:
    """``"coco"``, ``"voc"`` or ``"csv"`` from a path: ``.json``, ``.xml`` or a folder, ``.csv``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix == ".csv":
        return "csv"
    if suffix == ".xml" or p.is_dir() or suffix == "":
        return "voc"
    raise BoxFormatError(
        f"{path}: unknown box file type '{suffix}' (expected .json for COCO, .csv, or .xml / a "
        "folder of .xml files for PASCAL VOC)"
    )


def read_boxes(path: str | Path) -> BoxSet:
    """Read a COCO ``.json``, a VOC ``.xml`` or folder of them, or a ``.csv`` box file."""
    p = Path(path)
    if not p.exists():
        raise BoxFormatError(f"{path}: no such file or folder")
    fmt = detect_format(p)
    return {"coco": read_coco, "voc": read_voc, "csv": read_csv}[fmt](p)


def write_boxes(path: str | Path, boxset: BoxSet, fmt: str | None = None) -> list[Path]:
    """Write by format or extension: ``.json`` COCO, ``.csv`` CSV, ``.xml`` (one image) or a
    folder (any other path) for VOC. Returns the files written."""
    fmt = fmt or detect_format(path)
    if fmt == "coco":
        return [write_coco(path, boxset)]
    if fmt == "csv":
        return [write_csv(path, boxset)]
    if fmt == "voc":
        p = Path(path)
        if p.suffix.lower() == ".xml":
            images = boxset.images
            if len(images) != 1:
                raise BoxFormatError(
                    f"{path}: a single VOC .xml file holds one image, this set has "
                    f"{len(images)}; give a folder to write one .xml per image"
                )
            name = images[0]
            return [write_voc_file(p, name, boxset.boxes.get(name, []), boxset.sizes.get(name))]
        return write_voc(p, boxset)
    raise BoxFormatError(f"{path}: unknown format {fmt!r} (coco, voc or csv)")
