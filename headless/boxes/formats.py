"""COCO JSON, PASCAL VOC XML and CSV box files: read, check, clip, write.

Coordinate conventions (our boxes are 0-based, ``x1``/``y1`` exclusive, see :mod:`.types`):

* **COCO** ``bbox = [x, y, w, h]`` uses the same continuous pixel frame: ``x0 = x``,
  ``x1 = x + w``. We also store ``"bbox_xyxy"`` in each annotation (other tools ignore it) so that
  non-integer corners come back bit for bit (``x + w`` can differ from ``x1`` in the last bit).
* **PASCAL VOC** stores whole, 1-based, *inclusive* pixel indices: a box over the first ten
  columns is ``xmin=1, xmax=10``. So ``x0 = xmin - 1`` and ``x1 = xmax`` (the same for y), and
  writing is ``xmin = x0 + 1``, ``xmax = x1``. VOC holds whole pixels only: non-integer corners are
  rounded to the nearest pixel edge when written. Scores and sources go into extra ``<score>`` /
  ``<source>`` elements of each ``<object>``, which VOC tools ignore.
* **CSV** columns ``image,width,height,label,x0,y0,x1,y1,score,source`` in our convention (and,
  only when some box has them, ``difficult,truncated``). An image with no box is one row with
  empty box fields, so the image list and sizes survive.

Readers clip boxes that stick out of their image and drop those left with no area; every such
fix is logged and listed in ``BoxSet.warnings``. Malformed files raise :class:`BoxFormatError`
naming the file and the field.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

from headless.boxes.types import Box, BoxSet
from headless.store import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

CSV_COLUMNS = ["image", "width", "height", "label", "x0", "y0", "x1", "y1", "score", "source"]
CSV_FLAG_COLUMNS = ["difficult", "truncated"]
#: ``source`` of boxes read from a file that does not say who made them.
DEFAULT_SOURCE = "gt"


class BoxFormatError(ValueError):
    """A box file that cannot be read; the message names the file and the field."""


def _err(path: str | Path, where: str, problem: str) -> BoxFormatError:
    where = f" {where}:" if where else ""
    return BoxFormatError(f"{path}:{where} {problem}")


# -- shared helpers -------------------------------------------------------------------------


def _number(value: Any, path: str | Path, where: str, field: str) -> float:
    """A finite float from a file value, or an error naming the field."""
    if isinstance(value, bool) or value is None:
        raise _err(path, where, f"field '{field}' must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _err(path, where, f"field '{field}' must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise _err(path, where, f"field '{field}' must be finite, got {value!r}")
    return v


def _size(value: Any, path: str | Path, where: str, field: str) -> int:
    v = _number(value, path, where, field)
    if v <= 0 or v != int(v):
        raise _err(path, where, f"field '{field}' must be a positive whole number, got {value!r}")
    return int(v)


def _fmt(v: float) -> str:
    """Shortest text that reads back as the same float; whole numbers without '.0'."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _xyxy_text(box: Box) -> str:
    return "[" + ", ".join(_fmt(v) for v in box.xyxy()) + "]"


def _clip_to_image(
    box: Box, size: tuple[int, int] | None, path: str | Path, image: str, index: int,
    warnings: list[str],
) -> Box | None:
    """Clip a box to its image; report the fix; None when nothing of it lies in the image."""
    if size is None:
        return box
    w, h = size
    if box.x0 >= 0 and box.y0 >= 0 and box.x1 <= w and box.y1 <= h:
        return box
    clipped = box.clip(w, h)
    where = f"{path}: image '{image}': box {index} {_xyxy_text(box)}"
    if clipped.width <= 0 or clipped.height <= 0:
        msg = f"{where} lies outside the {w}x{h} image; dropped"
        warnings.append(msg)
        log.warning(msg)
        return None
    msg = f"{where} sticks out of the {w}x{h} image; clipped to {_xyxy_text(clipped)}"
    warnings.append(msg)
    log.warning(msg)
    return clipped


def _check_order(box: Box, path: str | Path, where: str, names: tuple[str, str, str, str]) -> None:
    if box.x1 < box.x0:
        raise _err(path, where, f"field '{names[2]}' ({box.x1:g}) is left of "
                                f"'{names[0]}' ({box.x0:g})")
    if box.y1 < box.y0:
        raise _err(path, where, f"field '{names[3]}' ({box.y1:g}) is above "
                                f"'{names[1]}' ({box.y0:g})")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


# -- format detection -----------------------------------------------------------------------


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


# -- COCO -----------------------------------------------------------------------------------


def read_coco(path: str | Path) -> BoxSet:
    """Read a COCO detection dataset file (``images``, ``annotations``, ``categories``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _err(path, "", f"not valid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(path, "", f"cannot be read ({exc})") from None
    if isinstance(data, list):
        raise _err(path, "", "this is a COCO *results* list (no 'images' table), which cannot "
                             "name its images; give the dataset file with 'images' and "
                             "'annotations'")
    if not isinstance(data, dict):
        raise _err(path, "", "expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if key not in data:
            raise _err(path, "", f"missing field '{key}'")
        if not isinstance(data[key], list):
            raise _err(path, "", f"field '{key}' must be a list")
    cats = data.get("categories", [])
    if not isinstance(cats, list):
        raise _err(path, "", "field 'categories' must be a list")

    out = BoxSet()
    cat_names: dict[Any, str] = {}
    for i, c in enumerate(cats):
        where = f"categories[{i}]"
        if not isinstance(c, dict):
            raise _err(path, where, "must be an object")
        for key in ("id", "name"):
            if key not in c:
                raise _err(path, where, f"missing field '{key}'")
        cat_names[c["id"]] = str(c["name"])
        if str(c["name"]) not in out.classes:
            out.classes.append(str(c["name"]))

    id_to_name: dict[Any, str] = {}
    for i, im in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(im, dict):
            raise _err(path, where, "must be an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                raise _err(path, where, f"missing field '{key}'")
        if im["id"] in id_to_name:
            raise _err(path, where, f"field 'id' repeats image id {im['id']!r}")
        name = str(im["file_name"])
        if name in out.boxes:
            raise _err(path, where, f"field 'file_name' repeats {name!r}")
        id_to_name[im["id"]] = name
        out.boxes[name] = []
        out.sizes[name] = (_size(im["width"], path, where, "width"),
                           _size(im["height"], path, where, "height"))

    counters: dict[str, int] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise _err(path, where, "must be an object")
        for key in ("image_id", "bbox", "category_id"):
            if key not in ann:
                raise _err(path, where, f"missing field '{key}'")
        if ann["image_id"] not in id_to_name:
            raise _err(path, where, f"field 'image_id' {ann['image_id']!r} is not in 'images'")
        if ann["category_id"] not in cat_names:
            raise _err(path, where,
                       f"field 'category_id' {ann['category_id']!r} is not in 'categories'")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise _err(path, where, f"field 'bbox' must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (_number(v, path, where, "bbox") for v in bbox)
        if w < 0 or h < 0:
            raise _err(path, where, f"field 'bbox' has a negative width or height: {bbox!r}")
        x0, y0, x1, y1 = x, y, x + w, y + h
        exact = ann.get("bbox_xyxy")
        if isinstance(exact, list) and len(exact) == 4:
            e = [_number(v, path, where, "bbox_xyxy") for v in exact]
            # trust the exact corners only while they agree with bbox (bbox may have been edited)
            if all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(e, (x0, y0, x1, y1))):
                x0, y0, x1, y1 = e
        score = ann.get("score")
        box = Box(
            x0, y0, x1, y1,
            label=cat_names[ann["category_id"]],
            score=None if score is None else _number(score, path, where, "score"),
            source=str(ann.get("source", DEFAULT_SOURCE)),
            difficult=_flag(ann.get("difficult", False)),
            truncated=_flag(ann.get("truncated", False)),
        )
        name = id_to_name[ann["image_id"]]
        idx = counters.get(name, 0)
        counters[name] = idx + 1
        box = _clip_to_image(box, out.sizes[name], path, name, idx, out.warnings)
        if box is not None:
            out.boxes[name].append(box)
    return out


def coco_dict(boxset: BoxSet) -> dict[str, Any]:
    """The COCO dataset dictionary of a box set (ids: images, categories, annotations from 1)."""
    classes = boxset.all_classes()
    cat_id = {c: i + 1 for i, c in enumerate(classes)}
    images, anns = [], []
    for img_id, name in enumerate(boxset.images, start=1):
        if name not in boxset.sizes:
            raise BoxFormatError(f"COCO needs the size of every image; '{name}' has none")
        w, h = boxset.sizes[name]
        images.append({"id": img_id, "file_name": name, "width": int(w), "height": int(h)})
        for b in boxset.boxes.get(name, []):
            ann: dict[str, Any] = {
                "id": len(anns) + 1,
                "image_id": img_id,
                "category_id": cat_id[b.label],
                "bbox": [b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0],
                "bbox_xyxy": [b.x0, b.y0, b.x1, b.y1],
                "area": b.area,
                "iscrowd": 0,
                "source": b.source,
            }
            if b.score is not None:
                ann["score"] = b.score
            if b.difficult:
                ann["difficult"] = 1
            if b.truncated:
                ann["truncated"] = 1
            anns.append(ann)
    return {
        "info": {"description": "boxes written by napari-dinoseg",
                 "bbox_convention": "[x, y, width, height], 0-based pixels; "
                                    "bbox_xyxy = [x0, y0, x1, y1] with x1, y1 exclusive"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": cat_id[c], "name": c, "supercategory": "object"} for c in classes],
    }


def write_coco(path: str | Path, boxset: BoxSet) -> Path:
    """Write a COCO detection dataset file (atomically). Loads with ``pycocotools.coco.COCO``."""
    return atomic_write_text(path, json.dumps(coco_dict(boxset), indent=1))


# -- PASCAL VOC -----------------------------------------------------------------------------


def _xml_text(
    el: ET.Element, tag: str, path: Path, where: str, required: bool = True
) -> str | None:
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise _err(path, where, f"missing field '{tag}'")
        return None
    return child.text.strip()


def _read_voc_file(path: Path, warnings: list[str]) -> tuple[str, tuple[int, int], list[Box]]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise _err(path, "", f"not valid XML ({exc})") from None
    except OSError as exc:
        raise _err(path, "", f"cannot be read ({exc})") from None
    if root.tag != "annotation":
        raise _err(path, "", f"root element is <{root.tag}>, a VOC file has <annotation>")
    name = _xml_text(root, "filename", path, "annotation")
    w = _size(_xml_text(root, "size/width", path, "annotation"), path, "annotation",
              "size/width")
    h = _size(_xml_text(root, "size/height", path, "annotation"), path, "annotation",
              "size/height")
    boxes: list[Box] = []
    for i, obj in enumerate(root.findall("object")):
        where = f"object[{i}]"
        label = _xml_text(obj, "name", path, where)
        c = {}
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            field = f"bndbox/{tag}"
            c[tag] = _number(_xml_text(obj, field, path, where), path, where, field)
        # VOC: 1-based inclusive pixel indices -> 0-based, max side exclusive
        box = Box(
            c["xmin"] - 1.0, c["ymin"] - 1.0, c["xmax"], c["ymax"],
            label=str(label),
            score=None if obj.find("score") is None else _number(
                _xml_text(obj, "score", path, where), path, where, "score"),
            source=_xml_text(obj, "source", path, where, required=False) or DEFAULT_SOURCE,
            difficult=_flag(_xml_text(obj, "difficult", path, where, required=False) or "0"),
            truncated=_flag(_xml_text(obj, "truncated", path, where, required=False) or "0"),
        )
        _check_order(box, path, where, ("bndbox/xmin", "bndbox/ymin", "bndbox/xmax",
                                        "bndbox/ymax"))
        box = _clip_to_image(box, (w, h), path, name, i, warnings)
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
            raise _err(f, "annotation", f"field 'filename' {name!r} is also used by another "
                                        "file of the folder")
        out.add(name, boxes, size)
    return out


def _whole(v: float) -> int:
    """Nearest whole pixel edge, halves rounded up (not Python's round-half-to-even)."""
    return int(math.floor(v + 0.5))


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
            ET.SubElement(o, "score").text = _fmt(b.score)
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


# -- CSV ------------------------------------------------------------------------------------


def read_csv(path: str | Path) -> BoxSet:
    """Read our CSV box file; one row per box, or one row with empty box fields per image
    without boxes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(path, "", f"cannot be read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise _err(path, "line 1", f"missing column(s) {', '.join(repr(m) for m in missing)}; "
                                   f"expected {','.join(CSV_COLUMNS)}")
    out = BoxSet()
    counters: dict[str, int] = {}
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row:
            raise _err(path, where, "more fields than columns")
        name = (row["image"] or "").strip()
        if not name:
            raise _err(path, where, "field 'image' is empty")
        size = (_size(row["width"], path, where, "width"),
                _size(row["height"], path, where, "height"))
        if name in out.sizes and out.sizes[name] != size:
            raise _err(path, where, f"fields 'width'/'height' {size} differ from an earlier row "
                                    f"of '{name}' {out.sizes[name]}")
        out.sizes[name] = size
        out.boxes.setdefault(name, [])
        coords = [(row[k] or "").strip() for k in ("x0", "y0", "x1", "y1")]
        if not any(coords):
            continue  # an image without boxes
        x0, y0, x1, y1 = (_number(v, path, where, k)
                          for v, k in zip(coords, ("x0", "y0", "x1", "y1")))
        score = (row["score"] or "").strip()
        box = Box(
            x0, y0, x1, y1,
            label=(row["label"] or "").strip() or "object",
            score=_number(score, path, where, "score") if score else None,
            source=(row["source"] or "").strip() or DEFAULT_SOURCE,
            difficult=_flag(row.get("difficult") or "0"),
            truncated=_flag(row.get("truncated") or "0"),
        )
        _check_order(box, path, where, ("x0", "y0", "x1", "y1"))
        idx = counters.get(name, 0)
        counters[name] = idx + 1
        box = _clip_to_image(box, size, path, name, idx, out.warnings)
        if box is not None:
            out.boxes[name].append(box)
            if box.label not in out.classes:
                out.classes.append(box.label)
    return out


def write_csv(path: str | Path, boxset: BoxSet) -> Path:
    """Write the CSV box file (atomically); floats are written so they read back exactly."""
    all_boxes = [b for bs in boxset.boxes.values() for b in bs]
    flags = any(b.difficult or b.truncated for b in all_boxes)
    columns = CSV_COLUMNS + (CSV_FLAG_COLUMNS if flags else [])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for name in boxset.images:
        if name not in boxset.sizes:
            raise BoxFormatError(f"{path}: CSV needs the size of every image; '{name}' has none")
        width, height = boxset.sizes[name]
        boxes = boxset.boxes.get(name, [])
        if not boxes:
            w.writerow([name, width, height] + [""] * (len(columns) - 3))
        for b in boxes:
            row = [name, width, height, b.label, _fmt(b.x0), _fmt(b.y0), _fmt(b.x1), _fmt(b.y1),
                   "" if b.score is None else _fmt(b.score), b.source]
            if flags:
                row += [int(b.difficult), int(b.truncated)]
            w.writerow(row)
    return atomic_write_text(path, buf.getvalue())
