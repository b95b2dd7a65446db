"""COCO detection JSON: read, check, clip, write.

``bbox = [x, y, w, h]`` uses our continuous pixel frame (0-based, ``x1``/``y1`` exclusive, see
:mod:`headless.boxes.types`): ``x0 = x``, ``x1 = x + w``. We also store ``"bbox_xyxy"`` in each
annotation (other tools ignore it) so that non-integer corners come back bit for bit (``x + w``
can differ from ``x1`` in the last bit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from headless.boxes.formats.common import (
    DEFAULT_SOURCE,
    BoxFormatError,
    clip_to_image,
    file_error,
    parse_flag,
    parse_number,
    parse_size,
)
from headless.boxes.types import Box, BoxSet
from headless.store import atomic_write_text


def _check_id(path: Path, where: str, field: str, value: Any) -> None:
    """COCO ids are numbers or strings; a list or object (unhashable) is a damaged file."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise file_error(path, where, f"field '{field}' must be a number or a string, got "
                                      f"{type(value).__name__}")


def read_coco(path: str | Path) -> BoxSet:
    """Read a COCO detection dataset file (``images``, ``annotations``, ``categories``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise file_error(path, "", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise file_error(path, "", "JSON nested too deeply to be a COCO file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, "", f"cannot be read ({exc})") from None
    if isinstance(data, list):
        raise file_error(path, "", "this is a COCO *results* list (no 'images' table), which "
                                   "cannot name its images; give the dataset file with 'images' "
                                   "and 'annotations'")
    if not isinstance(data, dict):
        raise file_error(path, "", "expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if key not in data:
            raise file_error(path, "", f"missing field '{key}'")
        if not isinstance(data[key], list):
            raise file_error(path, "", f"field '{key}' must be a list")
    cats = data.get("categories", [])
    if not isinstance(cats, list):
        raise file_error(path, "", "field 'categories' must be a list")

    out = BoxSet()
    cat_names: dict[Any, str] = {}
    for i, c in enumerate(cats):
        where = f"categories[{i}]"
        if not isinstance(c, dict):
            raise file_error(path, where, "must be an object")
        for key in ("id", "name"):
            if key not in c:
                raise file_error(path, where, f"missing field '{key}'")
        _check_id(path, where, "id", c["id"])
        cat_names[c["id"]] = str(c["name"])
        if str(c["name"]) not in out.classes:
            out.classes.append(str(c["name"]))

    id_to_name: dict[Any, str] = {}
    for i, im in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(im, dict):
            raise file_error(path, where, "must be an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                raise file_error(path, where, f"missing field '{key}'")
        _check_id(path, where, "id", im["id"])
        if im["id"] in id_to_name:
            raise file_error(path, where, f"field 'id' repeats image id {im['id']!r}")
        name = str(im["file_name"])
        if name in out.boxes:
            raise file_error(path, where, f"field 'file_name' repeats {name!r}")
        id_to_name[im["id"]] = name
        out.boxes[name] = []
        out.sizes[name] = (parse_size(im["width"], path, where, "width"),
                           parse_size(im["height"], path, where, "height"))

    counters: dict[str, int] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise file_error(path, where, "must be an object")
        for key in ("image_id", "bbox", "category_id"):
            if key not in ann:
                raise file_error(path, where, f"missing field '{key}'")
        _check_id(path, where, "image_id", ann["image_id"])
        _check_id(path, where, "category_id", ann["category_id"])
        if ann["image_id"] not in id_to_name:
            raise file_error(path, where,
                             f"field 'image_id' {ann['image_id']!r} is not in 'images'")
        if ann["category_id"] not in cat_names:
            raise file_error(path, where,
                             f"field 'category_id' {ann['category_id']!r} is not in 'categories'")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise file_error(path, where,
                             f"field 'bbox' must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (parse_number(v, path, where, "bbox") for v in bbox)
        if w < 0 or h < 0:
            raise file_error(path, where,
                             f"field 'bbox' has a negative width or height: {bbox!r}")
        x0, y0, x1, y1 = x, y, x + w, y + h
        exact = ann.get("bbox_xyxy")
        if isinstance(exact, list) and len(exact) == 4:
            e = [parse_number(v, path, where, "bbox_xyxy") for v in exact]
            # trust the exact corners only while they agree with bbox (bbox may have been edited)
            if all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(e, (x0, y0, x1, y1))):
                x0, y0, x1, y1 = e
        score = ann.get("score")
        box = Box(
            x0, y0, x1, y1,
            label=cat_names[ann["category_id"]],
            score=None if score is None else parse_number(score, path, where, "score"),
            source=str(ann.get("source", DEFAULT_SOURCE)),
            difficult=parse_flag(ann.get("difficult", False)),
            truncated=parse_flag(ann.get("truncated", False)),
        )
        name = id_to_name[ann["image_id"]]
        idx = counters.get(name, 0)
        counters[name] = idx + 1
        box = clip_to_image(box, out.sizes[name], path, name, idx, out.warnings)
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
