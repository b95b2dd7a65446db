"""How much an automatic result needs a human: one number in [0, 1] per result, with reasons.

A folder of automatic boxes, masks or segmentations is only as good as the images nobody
looked at. Each function here turns what a method already knows about its own result into
``{"uncertainty": u, "signals": {...}, "reasons": [...]}``: ``u`` in [0, 1] (1 = most in need
of a human), the raw ``signals`` (floats, or None where a signal is not available) so a user
can see *why*, and short ``reasons`` a list can show. The dict is JSON-able as it is (it is
saved in ``qc.json`` / ``boxes.json``). Pure numpy: callers bring the attention map or the
probabilities; nothing here loads a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from headless.boxes.metrics import iou as box_iou
from headless.boxes.types import Box

#: Weights of the box signals in :func:`box_uncertainty`. Agreement between methods is the
#: strongest evidence (two unrelated methods rarely make the same mistake), then where the
#: network looks, then the method's own score (a method is often confidently wrong).
BOX_WEIGHTS = {"agreement": 0.5, "attention_mass": 0.3, "score": 0.2}
#: Below these a signal is named in ``reasons``.
LOW_AGREEMENT = 0.5
LOW_ATTENTION = 0.5
LOW_SCORE = 0.3
#: SAM's own filter thresholds (``SamAutomaticMaskGenerator`` defaults).
SAM_IOU_OK = 0.88
SAM_STABILITY_OK = 0.95
HIGH_ENTROPY = 0.5
LOW_MARGIN = 0.3
#: A pixel whose two best classes are closer than this is "nearly tied".
TIED_MARGIN = 0.1
#: With no signal at all we know nothing: halfway, behind every image that has a real problem.
NO_SIGNAL = 0.5


def _clip01(x: float) -> float:
    return float(min(max(x, 0.0), 1.0))


def _record(uncertainty: float, signals: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
    """The shared result shape, with plain Python floats (JSON-able, rounded for reading)."""
    clean = {k: (None if v is None else (round(float(v), 6) if isinstance(v, float) else v))
             for k, v in signals.items()}
    return {"uncertainty": round(_clip01(uncertainty), 6), "signals": clean,
            "reasons": list(reasons)}


# -- boxes --------------------------------------------------------------------------------------
def best_iou(main: Sequence[Box], other: Sequence[Box]) -> float:
    """The best IoU between any box of ``main`` and any of ``other`` (0 if either is empty)."""
    return max((box_iou(a, b) for a in main for b in other), default=0.0)


def attention_mass(
    boxes: Sequence[Box], size: tuple[int, int], attention: np.ndarray
) -> float | None:
    """Share of the attention's total mass inside the union of ``boxes``.

    ``attention`` is ``(H, W)``, non-negative; at image resolution, or any other grid (a patch
    grid), the boxes are then scaled to it. None when the map has no mass.
    """
    att = np.asarray(attention, dtype=np.float64)
    if att.ndim != 2:
        raise ValueError(f"attention must be a 2D (H, W) map, got shape {att.shape}")
    att = np.where(np.isfinite(att), np.clip(att, 0.0, None), 0.0)
    total = float(att.sum())
    if total <= 0.0:
        return None
    width, height = size
    sy, sx = att.shape[0] / float(height), att.shape[1] / float(width)
    inside = np.zeros(att.shape, dtype=bool)
    for b in boxes:
        r0, r1 = math.floor(b.y0 * sy), math.ceil(b.y1 * sy)
        c0, c1 = math.floor(b.x0 * sx), math.ceil(b.x1 * sx)
        inside[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = True
    return float(att[inside].sum() / total)


def box_uncertainty(
    boxes: Sequence[Box],
    size: tuple[int, int],
    *,
    attention: np.ndarray | None = None,
    other_boxes: Mapping[str, Sequence[Box]] | None = None,
) -> dict[str, Any]:
    """How much one image's automatic boxes need checking.

    Signals (each in [0, 1], None when not available):

    * ``score``: the best box's method score, clipped to [0, 1] (LOST, TokenCut, MOST and DINO
      attention all score in [0, 1]); None when no box has a score (user boxes);
    * ``agreement``: for each other method, the best IoU between any of our boxes and any of
      its boxes (0 when it found nothing), averaged over the methods; None without others;
    * ``attention_mass``: share of the attention map's mass inside the union of the boxes.

    ``uncertainty = sum_i w_i * (1 - s_i) / sum_i w_i`` over the *available* signals ``s_i``,
    with ``w`` = :data:`BOX_WEIGHTS` (agreement 0.5, attention 0.3, score 0.2): a missing
    signal is left out of the average, not counted as 0. No box at all: 1.0, "no object
    found". Boxes but no signal: :data:`NO_SIGNAL` (0.5), "no confidence signal".
    """
    boxes = list(boxes)
    signals: dict[str, Any] = {"n_boxes": len(boxes), "score": None, "agreement": None,
                               "attention_mass": None}
    if not boxes:
        return _record(1.0, signals, ["no object found"])
    reasons: list[str] = []
    scores = [b.score for b in boxes if b.score is not None and math.isfinite(b.score)]
    if scores:
        signals["score"] = _clip01(max(scores))
    if other_boxes:
        per_method = {name: best_iou(boxes, list(theirs or []))
                      for name, theirs in other_boxes.items()}
        signals["agreement"] = float(np.mean(list(per_method.values())))
        signals["agreement_by_method"] = {k: round(v, 6) for k, v in per_method.items()}
        if signals["agreement"] < LOW_AGREEMENT:
            reasons.append(f"methods disagree (IoU {signals['agreement']:.2f})")
        empty = [name for name, theirs in other_boxes.items() if not theirs]
        if empty:
            reasons.append("no object for " + ", ".join(sorted(empty)))
    if attention is not None:
        signals["attention_mass"] = attention_mass(boxes, size, attention)
        mass = signals["attention_mass"]
        if mass is not None and mass < LOW_ATTENTION:
            reasons.append(f"little attention in box ({mass:.0%})")
    if signals["score"] is not None and signals["score"] < LOW_SCORE:
        reasons.append(f"low score ({signals['score']:.2f})")
    available = {k: signals[k] for k in BOX_WEIGHTS if signals[k] is not None}
    if not available:
        return _record(NO_SIGNAL, signals, ["no confidence signal"])
    total_w = sum(BOX_WEIGHTS[k] for k in available)
    u = sum(BOX_WEIGHTS[k] * (1.0 - v) for k, v in available.items()) / total_w
    return _record(u, signals, reasons)


# -- SAM ----------------------------------------------------------------------------------------
def sam_uncertainty(
    predicted_iou: Sequence[float],
    stability: Sequence[float],
    areas: Sequence[int] | None = None,
) -> dict[str, Any]:
    """How much one image's SAM masks need checking.

    Each mask's doubt is ``1 - min(predicted_iou, stability)`` (clipped to [0, 1]): a mask is
    only as good as its weaker signal. The image's uncertainty is the **area-weighted** mean
    of those when ``areas`` are given (a large doubtful mask costs a reviewer more than a
    speck), else the plain mean. No mask: 1.0, "no mask".
    """
    iou = np.asarray(list(predicted_iou), dtype=np.float64)
    stab = np.asarray(list(stability), dtype=np.float64)
    if iou.shape != stab.shape:
        raise ValueError(f"{iou.size} predicted IoU value(s) but {stab.size} stability score(s)")
    signals: dict[str, Any] = {"n_masks": int(iou.size), "predicted_iou": None,
                               "stability": None, "min_predicted_iou": None,
                               "min_stability": None}
    if iou.size == 0:
        return _record(1.0, signals, ["no mask"])
    weights = np.ones_like(iou)
    if areas is not None:
        a = np.asarray(list(areas), dtype=np.float64)
        if a.shape != iou.shape:
            raise ValueError(f"{iou.size} mask(s) but {a.size} area(s)")
        if np.all(a >= 0) and a.sum() > 0:
            weights = a
    iou_c = np.clip(np.nan_to_num(iou, nan=0.0), 0.0, 1.0)
    stab_c = np.clip(np.nan_to_num(stab, nan=0.0), 0.0, 1.0)
    doubt = 1.0 - np.minimum(iou_c, stab_c)
    u = float(np.average(doubt, weights=weights))
    signals.update(predicted_iou=float(np.average(iou_c, weights=weights)),
                   stability=float(np.average(stab_c, weights=weights)),
                   min_predicted_iou=float(iou_c.min()), min_stability=float(stab_c.min()))
    reasons = []
    if signals["predicted_iou"] < SAM_IOU_OK:
        reasons.append(f"low predicted IoU ({signals['predicted_iou']:.2f})")
    if signals["stability"] < SAM_STABILITY_OK:
        reasons.append(f"unstable mask (stability {signals['stability']:.2f})")
    return _record(u, signals, reasons)


# -- scribble segmentation ----------------------------------------------------------------------
def probability_uncertainty(probs: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """How much a segmentation's class probabilities ``(C, H, W)`` need checking.

    Per pixel: the normalised entropy ``H(p) / log C`` (0 = one-hot, 1 = uniform) and the
    margin ``p_top1 - p_top2`` (1 = certain, 0 = tied). ``uncertainty`` = the mean normalised
    entropy over the pixels (those where ``mask`` is true, if given); the mean margin and the
    share of nearly tied pixels (margin < :data:`TIED_MARGIN`) are reported alongside.
    Probabilities are clipped to >= 0 and renormalised per pixel; one class is certain (0).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"probabilities must be (C, H, W), got shape {p.shape}")
    n_classes = p.shape[0]
    if n_classes == 0:
        raise ValueError("probabilities have no class")
    flat = p.reshape(n_classes, -1)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != p.shape[1:]:
            raise ValueError(f"mask shape {m.shape} does not match probabilities {p.shape[1:]}")
        flat = flat[:, m.reshape(-1)]
    signals: dict[str, Any] = {"n_classes": int(n_classes), "n_pixels": int(flat.shape[1]),
                               "entropy": None, "margin": None, "tied_fraction": None}
    if flat.shape[1] == 0:
        return _record(1.0, signals, ["no pixels to score"])
    flat = np.clip(np.nan_to_num(flat, nan=0.0), 0.0, None)
    sums = flat.sum(axis=0, keepdims=True)
    flat = np.where(sums > 0, flat / np.where(sums > 0, sums, 1.0), 1.0 / n_classes)
    if n_classes == 1:
        entropy = np.zeros(flat.shape[1])
        margin = np.ones(flat.shape[1])
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(flat > 0, flat * np.log(flat), 0.0)
        entropy = np.clip(-plogp.sum(axis=0) / math.log(n_classes), 0.0, 1.0)
        top2 = np.partition(flat, n_classes - 2, axis=0)[n_classes - 2:]
        margin = top2[1] - top2[0]
    signals.update(entropy=float(entropy.mean()), margin=float(margin.mean()),
                   tied_fraction=float((margin < TIED_MARGIN).mean()))
    reasons = []
    if signals["entropy"] > HIGH_ENTROPY:
        reasons.append(f"uncertain pixels (entropy {signals['entropy']:.2f})")
    if signals["margin"] < LOW_MARGIN:
        reasons.append(f"close classes (margin {signals['margin']:.2f})")
    if signals["tied_fraction"] >= 0.25:
        reasons.append(f"{signals['tied_fraction']:.0%} of pixels nearly tied")
    return _record(signals["entropy"], signals, reasons)
