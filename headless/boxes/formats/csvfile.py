"""Our CSV box file: read, check, clip, write.

Columns ``image,width,height,label,x0,y0,x1,y1,score,source`` in our convention (and, only when
some box has them, ``difficult,truncated``). An image with no box is one row with empty box
fields, so the image list and sizes survive.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
)
from headless.boxes.types import Box, BoxSet
from headless.store import atomic_write_text

CSV_COLUMNS = ["image", "width", "height", "label", "x0", "y0", "x1", "y1", "score", "source"]
CSV_FLAG_COLUMNS = ["difficult", "truncated"]


def _rows(reader: Any, path: Path) -> Iterator[dict[str, Any]]:
    """The reader's rows; a malformed row (a field over 128 KB, a NUL) is one line naming it."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise file_error(path, f"line {reader.line_num}",
                             f"not a valid CSV box file ({exc})") from None
        yield row


def read_csv(path: str | Path) -> BoxSet:
    """Read our CSV box file; one row per box, or one row with empty box fields per image
    without boxes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, "", f"cannot be read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KB limit
        raise file_error(path, "line 1", f"not a valid CSV box file ({exc})") from None
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise file_error(path, "line 1",
                         f"missing column(s) {', '.join(repr(m) for m in missing)}; "
                         f"expected {','.join(CSV_COLUMNS)}")
    out = BoxSet()
    counters: dict[str, int] = {}
    for row in _rows(reader, path):
        where = f"line {reader.line_num}"
        if None in row:
            raise file_error(path, where, "more fields than columns")
        name = (row["image"] or "").strip()
        if not name:
            raise file_error(path, where, "field 'image' is empty")
        size = (parse_size(row["width"], path, where, "width"),
                parse_size(row["height"], path, where, "height"))
        if name in out.sizes and out.sizes[name] != size:
            raise file_error(path, where, f"fields 'width'/'height' {size} differ from an "
                                          f"earlier row of '{name}' {out.sizes[name]}")
        out.sizes[name] = size
        out.boxes.setdefault(name, [])
        coords = [(row[k] or "").strip() for k in ("x0", "y0", "x1", "y1")]
        if not any(coords):
            continue  # an image without boxes
        x0, y0, x1, y1 = (parse_number(v, path, where, k)
                          for v, k in zip(coords, ("x0", "y0", "x1", "y1")))
        score = (row["score"] or "").strip()
        box = Box(
            x0, y0, x1, y1,
            label=(row["label"] or "").strip() or "object",
            score=parse_number(score, path, where, "score") if score else None,
            source=(row["source"] or "").strip() or DEFAULT_SOURCE,
            difficult=parse_flag(row.get("difficult") or "0"),
            truncated=parse_flag(row.get("truncated") or "0"),
        )
        check_order(box, path, where, ("x0", "y0", "x1", "y1"))
        idx = counters.get(name, 0)
        counters[name] = idx + 1
        box = clip_to_image(box, size, path, name, idx, out.warnings)
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
            row = [name, width, height, b.label, *(format_number(v) for v in b.xyxy()),
                   "" if b.score is None else format_number(b.score), b.source]
            if flags:
                row += [int(b.difficult), int(b.truncated)]
            w.writerow(row)
    return atomic_write_text(path, buf.getvalue())
