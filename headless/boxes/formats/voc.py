"""PASCAL VOC XML (one file per image, or a folder of them): read, check, clip, write.

VOC stores whole, 1-based, *inclusive* pixel indices: a box over the first ten columns is
``xmin=1, xmax=10``. So ``x0 = xmin - 1`` and ``x1 = xmax`` (the same for y), and writing is
``xmin = x0 + 1``, ``xmax = x1``. VOC holds whole pixels only: non-integer corners are rounded to
the nearest pixel edge when written. Scores and sources go into extra ``<score>`` /
``<source>`` elements of each ``<object>``, which VOC tools ignore.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path, PurePath

from headless.boxes.formats.common import (
    DEFAULT_SOURCE,
    BoxFormatError,
    check_order,
    clip_to_image,
    file_error,
    format_number,
    parse_flag,
    parse_number,
    parse_size,
    whole_pixel,
)
from headless.boxes.types import Box, BoxSet
from headless.store import atomic_write_bytes


def _xml_text(
    el: ET.Element, tag: str, path: Path, where: str, required: bool = True
) -> str | None:
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise file_error(path, where, f"missing field '{tag}'")
        return None
    return child.text.strip()


def _read_voc_file(path: Path, warnings: list[str]) -> tuple[str, tuple[int, int], list[Box]]:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import parse as safe_parse

    try:  # defusedxml: entity expansion, external entities and DTDs are refused, not resolved
        root = safe_parse(path).getroot()
    except DefusedXmlException as exc:
        raise file_error(path, "", f"refused: unsafe XML ({type(exc).__name__})") from None
    except ET.ParseError as exc:
        raise file_error(path, "", f"not valid XML ({exc})") from None
    except OSError as exc:
        raise file_error(path, "", f"cannot be read ({exc})") from None
    if root.tag != "annotation":
        raise file_error(path, "", f"root element is <{root.tag}>, a VOC file has <annotation>")
    name = _xml_text(root, "filename", path, "annotation")
    w = parse_size(_xml_text(root, "size/width", path, "annotation"), path, "annotation",
                   "size/width")
    h = parse_size(_xml_text(root, "size/height", path, "annotation"), path, "annotation",
                   "size/height")
    boxes: list[Box] = []
    for i, obj in enumerate(root.findall("object")):
        where = f"object[{i}]"
        label = _xml_text(obj, "name", path, where)
        c = {}
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            field = f"bndbox/{tag}"
            c[tag] = parse_number(_xml_text(obj, field, path, where), path, where, field)
        # VOC: 1-based inclusive pixel indices -> 0-based, max side exclusive
        box = Box(
            c["xmin"] - 1.0, c["ymin"] - 1.0, c["xmax"], c["ymax"],
            label=str(label),
            score=None if obj.find("score") is None else parse_number(
                _xml_text(obj, "score", path, where), path, where, "score"),
            source=_xml_text(obj, "source", path, where, required=False) or DEFAULT_SOURCE,
            difficult=parse_flag(_xml_text(obj, "difficult", path, where, required=False) or "0"),
            truncated=parse_flag(_xml_text(obj, "truncated", path, where, required=False) or "0"),
        )
        check_order(box, path, where, ("bndbox/xmin", "bndbox/ymin", "bndbox/xmax",
                                       "bndbox/ymax"))
        box = clip_to_image(box, (w, h), path, name, i, warnings)
        if box is not None:
            boxes.append(box)
    return name, (w, h), boxes


def read_voc(path: str | Path) -> BoxSet:
    """Read one VOC ``.xml`` file or every ``.xml`` file of a folder (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml" and p.is_file()
                       and not p.name.startswith("."))
        if not files:
            raise BoxFormatError(f"{path}: the folder holds no VOC .xml files")
    else:
        files = [path]
    out = BoxSet()
    for f in files:
        name, size, boxes = _read_voc_file(f, out.warnings)
        if name in out.boxes:
            raise file_error(f, "annotation", f"field 'filename' {name!r} is also used by "
                                              "another file of the folder")
        out.add(name, boxes, size)
    return out


_whole = whole_pixel


def _voc_element(name: str, boxes: Iterable[Box], size: tuple[int, int]) -> ET.Element:
    root = ET.Element("annotation")
    parent = str(PurePath(name).parent)
    ET.SubElement(root, "folder").text = "" if parent == "." else parent
    ET.SubElement(root, "filename").text = PurePath(name).name if parent == "." else name
    s = ET.SubElement(root, "size")
    ET.SubElement(s, "width").text = str(int(size[0]))
    ET.SubElement(s, "height").text = str(int(size[1]))
    ET.SubElement(s, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for b in boxes:
        o = ET.SubElement(root, "object")
        ET.SubElement(o, "name").text = b.label
        ET.SubElement(o, "pose").text = "Unspecified"
        ET.SubElement(o, "truncated").text = "1" if b.truncated else "0"
        ET.SubElement(o, "difficult").text = "1" if b.difficult else "0"
        bb = ET.SubElement(o, "bndbox")
        # 0-based exclusive -> 1-based inclusive whole pixels
        xmin, ymin = _whole(b.x0) + 1, _whole(b.y0) + 1
        xmax, ymax = max(_whole(b.x1), xmin), max(_whole(b.y1), ymin)
        for tag, v in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            ET.SubElement(bb, tag).text = str(int(v))
        if b.score is not None:
            ET.SubElement(o, "score").text = format_number(b.score)
        ET.SubElement(o, "source").text = b.source
    ET.indent(root, space="\t")
    return root


def write_voc_file(
    path: str | Path, name: str, boxes: Iterable[Box], size: tuple[int, int] | None
) -> Path:
    """Write one image's boxes as a VOC ``.xml`` file (atomically)."""
    if size is None:
        raise BoxFormatError(f"{path}: VOC needs the image size of '{name}'")
    root = _voc_element(name, boxes, size)
    buf = io.BytesIO()
    ET.ElementTree(root).write(buf, encoding="utf-8", xml_declaration=False)
    return atomic_write_bytes(path, buf.getvalue() + b"\n")


def write_voc(folder: str | Path, boxset: BoxSet) -> list[Path]:
    """Write a folder of VOC ``.xml`` files, ``<image stem>.xml`` per image (empty ones too)."""
    folder = Path(folder)
    stems: dict[str, str] = {}
    for name in boxset.images:
        stem = PurePath(name).stem
        if stem in stems:
            raise BoxFormatError(
                f"{folder}: images '{stems[stem]}' and '{name}' would both be written to "
                f"{stem}.xml"
            )
        stems[stem] = name
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_voc_file(folder / f"{stem}.xml", name, boxset.boxes.get(name, []),
                       boxset.sizes.get(name))
        for stem, name in stems.items()
    ]
