"""Boxes exported from napari (COCO / VOC / CSV / JSON), matched to the images of a dataset.

A key matches an image by its path relative to the dataset folder or, when unique, by its file
name; boxes for images the dataset does not hold are an error before a worker starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headless.boxes import Box
from headless.train.data.errors import DatasetError


@dataclass
class BoxTable:
    """Boxes per image key (file name or path relative to the dataset root), and image sizes."""

    boxes: dict[str, list[Box]]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    source: str = ""


def read_box_table(path: str | Path) -> BoxTable:
    """Read exported boxes: COCO / VOC / CSV (``headless.boxes.read_boxes``), or a JSON mapping
    ``{image: [Box.to_dict(), ...]}`` (optionally ``{"boxes": ..., "sizes": ...}``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"boxes file {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"boxes file {path} is not readable JSON ({exc})") from None
        if isinstance(obj, dict) and not {"images", "annotations"} <= set(obj):
            return _box_table_from_mapping(obj, path)
    from headless import boxes as boxes_module

    reader = getattr(boxes_module, "read_boxes", None)
    if reader is None:
        raise DatasetError(
            f"{path}: reading {path.suffix or 'folder'} box files needs headless.boxes.read_boxes, "
            "which this version lacks; export the boxes as JSON"
        )
    try:
        box_set = reader(path)
    except (ValueError, KeyError, OSError) as exc:
        raise DatasetError(f"boxes file {path}: {exc}") from None
    sizes = {k: (int(v[0]), int(v[1])) for k, v in getattr(box_set, "sizes", {}).items()}
    return BoxTable({k: list(v) for k, v in box_set.boxes.items()}, sizes, str(path))


def _box_table_from_mapping(obj: dict[str, Any], path: Path) -> BoxTable:
    sizes: dict[str, tuple[int, int]] = {}
    if "boxes" in obj and isinstance(obj["boxes"], dict):
        sizes = {k: (int(v[0]), int(v[1])) for k, v in (obj.get("sizes") or {}).items()}
        obj = obj["boxes"]
    table: dict[str, list[Box]] = {}
    for key, items in obj.items():
        if not isinstance(items, list):
            raise DatasetError(f"boxes file {path}: entry {key!r} is not a list of boxes")
        try:
            table[key] = [Box.from_dict(b) for b in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"boxes file {path}: entry {key!r} has a bad box ({exc})") from None
    return BoxTable(table, sizes, str(path))


def match_boxes(
    samples: list[tuple[Path, int]], roots: list[Path], table: BoxTable
) -> dict[Path, tuple[list[Box], tuple[int, int] | None]]:
    """Image path -> (boxes, size the boxes were drawn on). Unknown images are an error.

    A key matches a path relative to any of ``roots`` (``cat/001.jpg``, ``train/cat/001.jpg``)
    or, when unique in the dataset, a bare file name.
    """
    by_rel: dict[str, Path] = {}
    by_name: dict[str, list[Path]] = {}
    for p, _ in samples:
        for r in roots:
            try:
                by_rel[p.relative_to(r).as_posix()] = p
            except ValueError:
                pass
        by_rel[str(p)] = p
        by_name.setdefault(p.name, []).append(p)
    out: dict[Path, tuple[list[Box], tuple[int, int] | None]] = {}
    missing, ambiguous = [], []
    for key, boxes in table.boxes.items():
        norm = key.replace("\\", "/")
        path = by_rel.get(norm)
        if path is None:
            hits = by_name.get(Path(norm).name, [])
            if len(hits) == 1:
                path = hits[0]
            elif len(hits) > 1:
                ambiguous.append(key)
                continue
        if path is None:
            missing.append(key)
            continue
        out[path] = (list(boxes), table.sizes.get(key))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"boxes file {table.source} has boxes for {len(missing)} image(s) that are not in the "
            f"dataset ({', '.join(str(r) for r in roots[:1])}): {shown}. Keys must be file names "
            "or paths relative to the dataset folder"
        )
    if ambiguous:
        raise DatasetError(
            f"boxes file {table.source}: file names {', '.join(ambiguous[:5])} occur in several "
            "class folders; use paths relative to the dataset folder (class/name.jpg)"
        )
    return out
