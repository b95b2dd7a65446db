"""Box metrics: IoU, aIoU, per-image scores, CorLoc, mean IoU and maIoU over a dataset.

Coordinates are pixels ``[x0, y0, x1, y1]`` with ``x1``/``y1`` exclusive (the convention of the
reference LOST / TokenCut / MOST code), in the coordinates of the original, unresized image:
pixel column ``c`` spans ``[c, c + 1)``, so a box holding columns 10..19 is ``x0=10, x1=20`` and
the whole of a ``W x H`` image is ``[0, 0, W, H]``.

Metrics (:func:`iou`, :func:`aiou`, :func:`evaluate`, :func:`corloc`, :func:`mean_iou`,
:func:`maiou`) follow LOST's evaluation: an image counts for CorLoc when any prediction has
IoU >= 0.5 with any ground-truth box.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

from headless.boxes.types import Box, BoxSet

BoxesLike = BoxSet | Mapping[str, Sequence[Box]]


# -- metrics --------------------------------------------------------------------------------


def intersection(a: Box, b: Box) -> float:
    """Area shared by two boxes (0 when they do not overlap)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, w) * max(0.0, h)


def iou(a: Box, b: Box) -> float:
    """Intersection over union; 0 when the union is empty. No ``+1`` pixel terms (as LOST)."""
    inter = intersection(a, b)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def aiou(pred: Box, gt: Box) -> float:
    """Asymmetric IoU: intersection over the *ground-truth* area (seed 000's aIoU).

    It is 1 whenever the prediction covers the object, however large the prediction: it
    measures how much of the object a crop around ``pred`` keeps.
    """
    inter = intersection(pred, gt)
    return inter / gt.area if gt.area > 0 else 0.0


@dataclass(frozen=True)
class ImageScore:
    """One image's evaluation: the best (prediction, ground truth) pair by IoU."""

    image: str
    best_iou: float
    aiou: float
    hit: bool
    n_pred: int
    n_gt: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_image(
    preds: Sequence[Box], gts: Sequence[Box], threshold: float = 0.5, image: str = ""
) -> ImageScore:
    """Score one image.

    ``best_iou`` is the highest IoU over all (prediction, ground truth) pairs; the image is a
    hit (CorLoc) when it reaches ``threshold``. ``aiou`` is the asymmetric IoU of that best pair
    (ties broken by the larger aIoU), so a prediction cannot earn aIoU on one object while its
    IoU is counted on another. No prediction gives 0 for both.
    """
    best, best_a = 0.0, 0.0
    for p in preds:
        for g in gts:
            v = iou(p, g)
            a = aiou(p, g)
            if v > best or (v == best and a > best_a):
                best, best_a = v, a
    return ImageScore(image, best, best_a, bool(gts) and best >= threshold, len(preds), len(gts))


@dataclass(frozen=True)
class BoxEvaluation:
    """Dataset metrics over the ground-truth images that hold at least one box.

    ``corloc`` is the fraction of those images with a hit; ``mean_iou`` and ``maiou`` average
    the per-image best IoU and its aIoU (images without a prediction count 0).
    """

    corloc: float
    mean_iou: float
    maiou: float
    threshold: float
    n_images: int
    n_hits: int
    n_gt_boxes: int
    n_pred_boxes: int
    images_without_prediction: list[str]
    images_without_gt: list[str]
    predictions_not_in_gt: list[str]
    per_image: list[ImageScore]

    def to_dict(self, per_image: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not per_image:
            d.pop("per_image")
        return d

    def summary(self) -> str:
        lines = [
            f"CorLoc   {100 * self.corloc:6.2f} %  ({self.n_hits}/{self.n_images} images, "
            f"IoU >= {self.threshold:g})",
            f"mean IoU {100 * self.mean_iou:6.2f} %",
            f"maIoU    {100 * self.maiou:6.2f} %  (intersection over ground-truth area)",
            f"ground truth: {self.n_images} images with boxes, {self.n_gt_boxes} boxes",
            f"predictions:  {self.n_pred_boxes} boxes on the evaluated images",
        ]
        if self.images_without_prediction:
            lines.append(
                f"{len(self.images_without_prediction)} evaluated images have no prediction"
            )
        if self.images_without_gt:
            lines.append(f"{len(self.images_without_gt)} ground-truth images have no box "
                         "(not counted)")
        if self.predictions_not_in_gt:
            lines.append(f"{len(self.predictions_not_in_gt)} predicted images are not in the "
                         "ground truth (ignored)")
        return "\n".join(lines)


def _as_mapping(boxes: BoxesLike) -> dict[str, list[Box]]:
    if isinstance(boxes, BoxSet):
        out = {name: list(boxes.boxes.get(name, [])) for name in boxes.images}
        return out
    return {str(k): list(v) for k, v in boxes.items()}


def match_image_names(pred_names: Iterable[str], gt_names: Iterable[str]) -> dict[str, str]:
    """Pair ground-truth image names with prediction names: ``{gt_name: pred_name}``.

    Exact names first; then the file name without folders (``JPEGImages/000005.jpg`` vs
    ``000005.jpg``); then the name without extension (``000005``), used only when unambiguous.
    """
    preds = list(dict.fromkeys(pred_names))
    out: dict[str, str] = {}
    pred_set = set(preds)
    used: set[str] = set()
    pending = []
    for g in gt_names:
        if g in pred_set:
            out[g] = g
            used.add(g)
        else:
            pending.append(g)
    for keyfn in (lambda n: PurePath(n).name, lambda n: PurePath(n).stem):
        index: dict[str, list[str]] = {}
        for p in preds:
            if p not in used:
                index.setdefault(keyfn(p), []).append(p)
        still = []
        for g in pending:
            cands = index.get(keyfn(g), [])
            if len(cands) == 1 and cands[0] not in used:
                out[g] = cands[0]
                used.add(cands[0])
            else:
                still.append(g)
        pending = still
    return out


def evaluate(
    preds: BoxesLike,
    gts: BoxesLike,
    threshold: float = 0.5,
    images: Iterable[str] | None = None,
    ignore_difficult: bool = False,
) -> BoxEvaluation:
    """CorLoc, mean IoU and maIoU of ``preds`` against ``gts``.

    The evaluated images are the ground-truth images (restricted to ``images`` when given,
    matched by name, file name or stem) that hold at least one box; an image missing from the
    predictions scores 0. ``ignore_difficult`` drops VOC ``difficult`` boxes from the ground
    truth (LOST and TokenCut keep them, the default here).
    """
    pred_map = _as_mapping(preds)
    gt_map = _as_mapping(gts)
    if images is not None:
        wanted = list(images)
        keep = match_image_names(list(gt_map), wanted)  # {wanted: gt_name}
        gt_map = {keep[w]: gt_map[keep[w]] for w in wanted if w in keep}
    if ignore_difficult:
        gt_map = {k: [b for b in v if not b.difficult] for k, v in gt_map.items()}
    pairing = match_image_names(list(pred_map), list(gt_map))
    scores: list[ImageScore] = []
    no_gt: list[str] = []
    no_pred: list[str] = []
    n_pred = 0
    for name, gt_boxes in gt_map.items():
        if not gt_boxes:
            no_gt.append(name)
            continue
        p = pred_map.get(pairing[name], []) if name in pairing else []
        if not p:
            no_pred.append(name)
        n_pred += len(p)
        scores.append(score_image(p, gt_boxes, threshold, image=name))
    matched = set(pairing.values())
    extra = [p for p in pred_map if p not in matched]
    n = len(scores)
    hits = sum(s.hit for s in scores)
    return BoxEvaluation(
        corloc=hits / n if n else 0.0,
        mean_iou=sum(s.best_iou for s in scores) / n if n else 0.0,
        maiou=sum(s.aiou for s in scores) / n if n else 0.0,
        threshold=threshold,
        n_images=n,
        n_hits=hits,
        n_gt_boxes=sum(s.n_gt for s in scores),
        n_pred_boxes=n_pred,
        images_without_prediction=no_pred,
        images_without_gt=no_gt,
        predictions_not_in_gt=extra,
        per_image=scores,
    )


def corloc(preds: BoxesLike, gts: BoxesLike, threshold: float = 0.5) -> float:
    """Fraction of ground-truth images where some prediction has IoU >= ``threshold``."""
    return evaluate(preds, gts, threshold).corloc


def mean_iou(preds: BoxesLike, gts: BoxesLike) -> float:
    """Mean over ground-truth images of the best prediction/ground-truth IoU."""
    return evaluate(preds, gts).mean_iou


def maiou(preds: BoxesLike, gts: BoxesLike) -> float:
    """Mean asymmetric IoU (intersection over ground-truth area) over a dataset."""
    return evaluate(preds, gts).maiou


__all__ = [
    "BoxEvaluation",
    "BoxesLike",
    "ImageScore",
    "aiou",
    "corloc",
    "evaluate",
    "intersection",
    "iou",
    "maiou",
    "match_image_names",
    "mean_iou",
    "score_image",
]
