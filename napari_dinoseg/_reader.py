"""npe2 reader: COCO JSON, PASCAL VOC XML (a file or a folder of them) or CSV -> Shapes layer.

:func:`get_reader` only claims files that really hold boxes (a COCO dataset object, a VOC
``<annotation>``, a CSV with our columns) so other readers keep their ``.json``/``.xml``/``.csv``
files. Boxes clipped on import are reported as napari warnings.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headless.boxes.formats import CSV_COLUMNS


def _is_voc_xml(path: Path) -> bool:
    try:
        for _event, el in ET.iterparse(str(path), events=("start",)):
            return el.tag == "annotation"
    except (ET.ParseError, OSError):
        return False
    return False


def sniff(path: str | Path) -> str | None:
    """``"coco"``, ``"voc"``, ``"csv"`` when ``path`` holds boxes we can read, else None."""
    p = Path(path)
    try:
        if p.is_dir():
            xmls = sorted(x for x in p.iterdir() if x.suffix.lower() == ".xml")
            return "voc" if xmls and _is_voc_xml(xmls[0]) else None
        suffix = p.suffix.lower()
        if suffix == ".xml":
            return "voc" if _is_voc_xml(p) else None
        if suffix == ".csv":
            with open(p, encoding="utf-8-sig") as fh:
                header = [h.strip() for h in fh.readline().split(",")]
            return "csv" if all(c in header for c in CSV_COLUMNS) else None
        if suffix == ".json":
            with open(p, encoding="utf-8") as fh:
                d = json.load(fh)
            return "coco" if isinstance(d, dict) and "images" in d and "annotations" in d \
                else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """The reader for a box file or VOC folder, or None when it is not one of ours."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if sniff(path) is None:
        return None
    return read_boxes_layer


def read_boxes_layer(path: str | list[str]) -> list[tuple]:
    """One Shapes layer-data tuple (2D for one image, 3D with a plane per image)."""
    from headless.boxes import read_boxes
    from napari_dinoseg._widgets.boxes.layers import boxset_to_layer_data

    if isinstance(path, list):
        path = path[0]
    boxset = read_boxes(path)
    if boxset.warnings:
        from napari.utils.notifications import show_warning

        shown = boxset.warnings[:5]
        more = len(boxset.warnings) - len(shown)
        show_warning("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))
    name = Path(str(path).rstrip("/")).name
    return [boxset_to_layer_data(boxset, name=f"boxes · {name}")]
