"""The box types: :class:`Box` (one box) and :class:`BoxSet` (boxes of many images).

They live apart from the metrics (:mod:`headless.boxes.metrics`) and the file formats
(:mod:`headless.boxes.formats`) so that both can import them; use them through ``headless.boxes``.
Coordinates are pixels ``[x0, y0, x1, y1]`` with ``x1``/``y1`` exclusive, in the original image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in image pixels, ``x1``/``y1`` exclusive.

    ``label`` is the class name ("object" for class-agnostic methods), ``score`` the method's
    confidence (None for user boxes) and ``source`` who made it: a method name ("lost", "most",
    "tokencut", "dino", "sam") or "user" / "gt". ``difficult`` and ``truncated`` are PASCAL VOC's
    object flags, kept so that a VOC dataset survives a trip through the tool.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = "object"
    score: float | None = None
    source: str = "user"
    difficult: bool = False
    truncated: bool = False

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def clip(self, width: float, height: float) -> Box:
        """The box clipped to an image of the given size."""
        width, height = float(width), float(height)
        return replace(
            self,
            x0=min(max(self.x0, 0.0), width),
            y0=min(max(self.y0, 0.0), height),
            x1=min(max(self.x1, 0.0), width),
            y1=min(max(self.y1, 0.0), height),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Box:
        return cls(
            float(d["x0"]), float(d["y0"]), float(d["x1"]), float(d["y1"]),
            label=str(d.get("label", "object")),
            score=None if d.get("score") is None else float(d["score"]),
            source=str(d.get("source", "user")),
            difficult=bool(d.get("difficult", False)),
            truncated=bool(d.get("truncated", False)),
        )


@dataclass
class BoxSet:
    """Boxes of many images, as read from or written to a dataset file.

    ``boxes`` maps an image file name (the key every format stores: COCO ``file_name``, VOC
    ``<filename>``, the CSV ``image`` column) to its boxes; an image with no object maps to an
    empty list. ``sizes`` maps the same names to ``(width, height)``. ``classes`` lists the
    class names in a stable order (COCO category ids are ``1 + index``). ``warnings`` collects
    what a reader had to fix (boxes clipped to the image, boxes dropped): it is reported, never
    silently swallowed, and is not part of the data.
    """

    boxes: dict[str, list[Box]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def images(self) -> list[str]:
        """Every image name, boxes' order first, then images known only by size."""
        return list(dict.fromkeys([*self.boxes, *self.sizes]))

    @property
    def n_boxes(self) -> int:
        return sum(len(b) for b in self.boxes.values())

    def add(self, image: str, boxes: Iterable[Box], size: tuple[int, int] | None = None) -> None:
        """Add (or replace) one image's boxes; new labels are appended to ``classes``."""
        self.boxes[image] = list(boxes)
        if size is not None:
            self.sizes[image] = (int(size[0]), int(size[1]))
        for b in self.boxes[image]:
            if b.label not in self.classes:
                self.classes.append(b.label)

    def all_classes(self) -> list[str]:
        """``classes`` plus any label used by a box but not declared, in first-use order."""
        out = list(self.classes)
        for boxes in self.boxes.values():
            for b in boxes:
                if b.label not in out:
                    out.append(b.label)
        return out

    def subset(self, images: Iterable[str]) -> BoxSet:
        keep = [i for i in images if i in self.boxes or i in self.sizes]
        return BoxSet(
            boxes={i: list(self.boxes.get(i, [])) for i in keep},
            sizes={i: self.sizes[i] for i in keep if i in self.sizes},
            classes=list(self.classes),
        )
