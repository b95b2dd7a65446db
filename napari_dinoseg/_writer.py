"""npe2 writers: a Shapes layer of boxes -> COCO JSON, PASCAL VOC XML or CSV.

Each is a single-layer writer ``(path, data, meta) -> [written paths]``. The layer's metadata
(set by the box widget and the reader) names the image(s) and their sizes; a 3D layer (one plane
per image) writes a whole dataset. VOC keeps one ``.xml`` per image: a one-image layer is written
to ``path`` itself, a dataset to a folder named after ``path`` without ``.xml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _boxset(data: Any, meta: dict):
    from napari_dinoseg._widgets.boxes.layers import layer_data_to_boxset

    return layer_data_to_boxset(data, meta)


def write_coco(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Shapes layer of boxes as a COCO detection JSON file."""
    from headless.boxes import write_coco as _write

    return [str(_write(path, _boxset(data, meta)))]


def write_voc(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Shapes layer of boxes as PASCAL VOC XML (a folder of them for many images)."""
    from headless.boxes import write_voc as _write_folder
    from headless.boxes import write_voc_file

    boxset = _boxset(data, meta)
    images = boxset.images
    p = Path(path)
    if len(images) == 1:
        name = images[0]
        target = p if p.suffix.lower() == ".xml" else p.with_suffix(".xml")
        return [str(write_voc_file(target, name, boxset.boxes[name], boxset.sizes[name]))]
    folder = p.with_suffix("") if p.suffix.lower() == ".xml" else p
    return [str(f) for f in _write_folder(folder, boxset)]


def write_csv(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Shapes layer of boxes as CSV (image,width,height,label,x0,y0,x1,y1,score,source)."""
    from headless.boxes import write_csv as _write

    return [str(_write(path, _boxset(data, meta)))]
