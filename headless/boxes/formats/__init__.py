"""Box files: COCO JSON (:mod:`.coco`), PASCAL VOC XML (:mod:`.voc`), CSV (:mod:`.csvfile`),
read and written by path (:mod:`.dispatch`); shared parsing and clipping in :mod:`.common`.

Coordinates are ours (0-based pixels, ``x1``/``y1`` exclusive, see :mod:`headless.boxes.types`);
each format module says how its file maps onto them. Readers clip boxes that stick out of their
image (logged, listed in ``BoxSet.warnings``); malformed files raise :class:`BoxFormatError`.
"""

from __future__ import annotations

from headless.boxes.formats.coco import coco_dict, read_coco, write_coco
from headless.boxes.formats.common import DEFAULT_SOURCE, BoxFormatError
from headless.boxes.formats.csvfile import CSV_COLUMNS, CSV_FLAG_COLUMNS, read_csv, write_csv
from headless.boxes.formats.dispatch import detect_format, read_boxes, write_boxes
from headless.boxes.formats.voc import read_voc, write_voc, write_voc_file

__all__ = [
    "CSV_COLUMNS",
    "CSV_FLAG_COLUMNS",
    "DEFAULT_SOURCE",
    "BoxFormatError",
    "coco_dict",
    "detect_format",
    "read_boxes",
    "read_coco",
    "read_csv",
    "read_voc",
    "write_boxes",
    "write_coco",
    "write_csv",
    "write_voc",
    "write_voc_file",
]
