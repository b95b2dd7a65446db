"""Object boxes: the one box type, COCO / VOC / CSV files, metrics, the curation store, batch
compute (:mod:`.compute`) and the localisation methods (:mod:`.localize`: DINO attention, LOST,
MOST, TokenCut).

Coordinates are pixels ``[x0, y0, x1, y1]`` with ``x1``/``y1`` exclusive, in the original image
(see :mod:`.types`). The light names are re-exported here (``from headless.boxes import Box``);
:mod:`.compute` and :mod:`.localize` load models' features and are imported by their own path.
"""

from __future__ import annotations

from headless.boxes.curation import BoxCuration, ImageBoxes, clip_boxes
from headless.boxes.formats import (
    BoxFormatError,
    coco_dict,
    detect_format,
    read_boxes,
    read_coco,
    read_csv,
    read_voc,
    write_boxes,
    write_coco,
    write_csv,
    write_voc,
    write_voc_file,
)
from headless.boxes.metrics import (
    BoxesLike,
    BoxEvaluation,
    ImageScore,
    aiou,
    corloc,
    evaluate,
    intersection,
    iou,
    maiou,
    match_image_names,
    mean_iou,
    score_image,
)
from headless.boxes.types import Box, BoxSet

__all__ = [
    "Box",
    "BoxCuration",
    "BoxEvaluation",
    "BoxFormatError",
    "BoxSet",
    "BoxesLike",
    "ImageBoxes",
    "ImageScore",
    "aiou",
    "clip_boxes",
    "coco_dict",
    "corloc",
    "detect_format",
    "evaluate",
    "intersection",
    "iou",
    "maiou",
    "match_image_names",
    "mean_iou",
    "read_boxes",
    "read_coco",
    "read_csv",
    "read_voc",
    "score_image",
    "write_boxes",
    "write_coco",
    "write_csv",
    "write_voc",
    "write_voc_file",
]
