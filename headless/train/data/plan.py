"""What a job will train on (split and boxes), established before it starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headless.boxes import Box
from headless.train.data.box_table import match_boxes, read_box_table
from headless.train.data.errors import DatasetError
from headless.train.data.folders import Split, make_split


@dataclass
class DataPlan:
    """What a job will train on, established before it starts."""

    split: Split
    boxes: dict[Path, tuple[list[Box], tuple[int, int] | None]]

    def summary(self) -> dict[str, Any]:
        return {
            "classes": self.split.classes,
            "n_train": len(self.split.train),
            "n_val": len(self.split.val),
            "split": self.split.how,
            "n_images_with_boxes": len(self.boxes),
            "warnings": self.warnings(),
        }

    def warnings(self) -> list[str]:
        """What will not stop the run but makes its numbers mean less: said before it starts."""
        split = self.split
        if not split.val:
            return [f"no validation images ({split.how}): accuracy will not be measured; add "
                    "root/val, set data.val_root, or give every class two or more images"]
        in_val = {label for _, label in split.val}
        unseen = [c for i, c in enumerate(split.classes) if i not in in_val]
        if not unseen:
            return []
        shown = ", ".join(repr(c) for c in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
        return [f"{len(unseen)} of {len(split.classes)} classes have no validation image "
                f"({shown}): a class with one image is only trained on, never validated"]


def plan_data(spec: Any) -> DataPlan:
    """Split the dataset and match its boxes; raises :class:`DatasetError` on bad input."""
    split = make_split(spec.data, spec.seed)
    if not split.train:
        raise DatasetError(f"no training images in {spec.data.root}")
    boxes: dict[Path, tuple[list[Box], tuple[int, int] | None]] = {}
    if spec.data.boxes:
        table = read_box_table(spec.data.boxes)
        boxes = match_boxes(split.train + split.val, split.roots, table)
        if spec.crop.type == "localized" and not any(p in boxes for p, _ in split.train):
            raise DatasetError(
                f"boxes file {spec.data.boxes} matches none of the training images: the "
                "localized crop would never see a box"
            )
    return DataPlan(split, boxes)
