"""What the COCO, VOC and CSV readers and writers share: the error, field parsing, clipping.

Readers clip boxes that stick out of their image and drop those left with no area; every such
fix is logged (logger ``headless.boxes.formats``) and listed in ``BoxSet.warnings``. Malformed
files raise :class:`BoxFormatError` naming the file and the field.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from headless.boxes.types import Box

# the logger of the one-module formats, so log filters that name it keep working
log = logging.getLogger("headless.boxes.formats")

#: ``source`` of boxes read from a file that does not say who made them.
DEFAULT_SOURCE = "gt"


class BoxFormatError(ValueError):
    """A box file that cannot be read; the message names the file and the field."""


def whole_pixel(v: float) -> int:
    """Nearest whole pixel edge, halves rounded up (not Python's round-half-to-even).

    The one rounding rule of the project: VOC writes it, and curation saves every box with it,
    so a box reads the same in COCO, VOC and CSV.
    """
    return int(math.floor(float(v) + 0.5))


def whole_box(box: Box) -> Box:
    """``box`` with its corners on whole pixels (:func:`whole_pixel`)."""
    from dataclasses import replace

    return replace(box, x0=whole_pixel(box.x0), y0=whole_pixel(box.y0),
                   x1=whole_pixel(box.x1), y1=whole_pixel(box.y1))


def file_error(path: str | Path, where: str, problem: str) -> BoxFormatError:
    """``<file>: <where>: <problem>``, the one shape of every reader's error message."""
    where = f" {where}:" if where else ""
    return BoxFormatError(f"{path}:{where} {problem}")


def parse_number(value: Any, path: str | Path, where: str, field: str) -> float:
    """A finite float from a file value, or an error naming the field."""
    if isinstance(value, bool) or value is None:
        raise file_error(path, where, f"field '{field}' must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise file_error(path, where, f"field '{field}' must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise file_error(path, where, f"field '{field}' must be finite, got {value!r}")
    return v


MAX_SIDE = 10_000_000


def parse_size(value: Any, path: str | Path, where: str, field: str) -> int:
    """An image width or height: a positive whole number, or an error naming the field."""
    v = parse_number(value, path, where, field)
    if v <= 0 or v != int(v):
        raise file_error(path, where,
                         f"field '{field}' must be a positive whole number, got {value!r}")
    if v > MAX_SIDE:  # no image is this large: a damaged or hostile file
        raise file_error(path, where, f"field '{field}' {value!r} is larger than any image "
                                      f"(at most {MAX_SIDE})")
    return int(v)


def format_number(v: float) -> str:
    """Shortest text that reads back as the same float; whole numbers without '.0'."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _xyxy_text(box: Box) -> str:
    return "[" + ", ".join(format_number(v) for v in box.xyxy()) + "]"


def clip_to_image(
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


def check_order(box: Box, path: str | Path, where: str, names: tuple[str, str, str, str]) -> None:
    """Refuse a box whose right/bottom side lies before its left/top (``names``: the fields)."""
    if box.x1 < box.x0:
        raise file_error(path, where, f"field '{names[2]}' ({box.x1:g}) is left of "
                                      f"'{names[0]}' ({box.x0:g})")
    if box.y1 < box.y0:
        raise file_error(path, where, f"field '{names[3]}' ({box.y1:g}) is above "
                                      f"'{names[1]}' ({box.y0:g})")


def parse_flag(value: Any) -> bool:
    """``difficult`` / ``truncated`` from JSON, XML or CSV: 1 / true / yes, any case."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)

