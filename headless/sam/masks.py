"""SAM results (:class:`MaskSet`) and exact masks <-> boxes <-> labels conversions (pure numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from headless.boxes import Box


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass
class MaskSet:
    """SAM masks of one image with their quality scores.

    ``masks[i]`` has label ``i + 1`` in :meth:`labels`. Automatic masks are sorted by area,
    largest first; box-prompted masks follow the order of the boxes (``prompts`` holds each
    mask's point ``(x, y)`` or box ``(x0, y0, x1, y1)``). ``empty_prompts`` lists boxes that lay
    entirely outside the image (their masks are empty). ``classes`` holds a class name per mask
    (the prompt box's label; "object" for automatic masks).
    """

    masks: np.ndarray  # (N, H, W) bool
    predicted_iou: np.ndarray  # (N,) float32, the decoder's own quality estimate
    stability_score: np.ndarray  # (N,) float32, IoU of masks at logit thresholds +-offset
    prompts: np.ndarray  # (N, 2) points or (N, 4) boxes, image pixels
    kind: str  # "automatic" | "boxes"
    model: str = ""
    empty_prompts: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.classes) != self.n:
            self.classes = ["object"] * self.n

    @property
    def n(self) -> int:
        return int(self.masks.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.masks.shape[1]), int(self.masks.shape[2]))

    @property
    def areas(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2)).astype(np.int64)

    def labels(self) -> np.ndarray:
        return labels_from_masks(self.masks)

    def boxes(self, source: str = "sam") -> list[Box | None]:
        """Tight box of each mask (None for an empty mask), scored by predicted IoU."""
        return [
            mask_to_box(m, label=c, score=float(s), source=source)
            for m, s, c in zip(self.masks, self.predicted_iou, self.classes)
        ]

    def table(self) -> dict[str, np.ndarray]:
        """One row per label (``label`` = value in :meth:`labels`), for layers and files."""
        boxes = self.boxes()
        nan = float("nan")
        return {
            "label": np.arange(1, self.n + 1, dtype=np.int64),
            "predicted_iou": self.predicted_iou.astype(np.float32),
            "stability_score": self.stability_score.astype(np.float32),
            "area": self.areas,
            "x0": np.array([b.x0 if b else nan for b in boxes], np.float64),
            "y0": np.array([b.y0 if b else nan for b in boxes], np.float64),
            "x1": np.array([b.x1 if b else nan for b in boxes], np.float64),
            "y1": np.array([b.y1 if b else nan for b in boxes], np.float64),
        }

    @classmethod
    def empty(cls, shape: tuple[int, int], kind: str, model: str = "") -> MaskSet:
        return cls(
            np.zeros((0, *shape), bool), np.zeros(0, np.float32), np.zeros(0, np.float32),
            np.zeros((0, 4 if kind == "boxes" else 2), np.float32), kind, model,
        )


# ---------------------------------------------------------------------------------------------
# Masks <-> boxes <-> labels (exact, pure numpy)
# ---------------------------------------------------------------------------------------------
def mask_to_box(mask: np.ndarray, label: str = "object", score: float | None = None,
                source: str = "sam") -> Box | None:
    """The tightest box holding every pixel of ``mask`` (``x1``/``y1`` exclusive); None if empty."""
    m = np.asarray(mask, bool)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return Box(float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1),
               label=label, score=score, source=source)


def masks_to_boxes(masks: np.ndarray | Sequence[np.ndarray], scores: Sequence[float] | None = None,
                   label: str = "object", source: str = "sam") -> list[Box]:
    """Tight boxes of the non-empty masks, in order (empty masks give no box)."""
    out = []
    for i, m in enumerate(masks):
        b = mask_to_box(m, label=label, score=None if scores is None else float(scores[i]),
                        source=source)
        if b is not None:
            out.append(b)
    return out


def boxes_from_labels(labels: np.ndarray, scores: dict[int, float] | None = None,
                      label: str = "object", source: str = "sam") -> list[Box]:
    """Tight box of every label value > 0 of a labels image, by increasing label value.

    This is what "boxes from masks" uses on a Labels layer, so hand edits count.
    """
    from scipy import ndimage

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2D labels image, got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {lab.dtype}")
    values = np.unique(lab)
    values = values[values > 0]
    out = []
    if values.size == 0:
        return out
    # relabel to 1..K so find_objects stays small for sparse label values
    dense = np.searchsorted(values, lab)
    dense = np.where(lab > 0, dense + 1, 0)
    for v, sl in zip(values, ndimage.find_objects(dense)):
        if sl is None:
            continue
        s = None if scores is None else scores.get(int(v))
        out.append(Box(float(sl[1].start), float(sl[0].start), float(sl[1].stop),
                       float(sl[0].stop), label=label,
                       score=None if s is None or not np.isfinite(s) else float(s), source=source))
    return out


def labels_from_masks(masks: np.ndarray) -> np.ndarray:
    """Labels image with value ``i + 1`` for mask ``i``; where masks overlap the smaller wins.

    Painting larger masks first keeps parts (small masks inside large ones) visible, as SAM's
    automatic masks nest. A mask entirely covered by smaller ones has no visible pixel.
    """
    m = np.asarray(masks, bool)
    if m.ndim != 3:
        raise ValueError(f"expected masks of shape (N, H, W), got {m.shape}")
    n = m.shape[0]
    dtype = np.uint16 if n < np.iinfo(np.uint16).max else np.uint32
    out = np.zeros(m.shape[1:], dtype)
    areas = m.sum(axis=(1, 2))
    for i in np.argsort(-areas, kind="stable"):
        out[m[i]] = i + 1
    return out


def masks_from_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, masks): one boolean mask per label value > 0 of a labels image."""
    lab = np.asarray(labels)
    values = np.unique(lab)
    values = values[values > 0]
    if values.size == 0:
        return values, np.zeros((0, *lab.shape), bool)
    return values, np.stack([lab == v for v in values])
