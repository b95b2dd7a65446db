"""DINO attention boxes: one box from the last layer's CLS attention map.

The rule of the seed project (pseudo ground-truth boxes for CUB): keep the smallest set of patches
holding ``keep`` (0.6, DINO's official threshold) of the attention mass; the box centre is the
mean of the foreground coordinates and its height / width are the number of rows / columns that
hold foreground. For a rectangular foreground this is exactly its patch extent; for a ragged one
it is a box of the foreground's "filled" size around its centre of mass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from headless.boxes.localize._grid import check_geometry, label_components, make_box, to_numpy
from headless.boxes.types import Box


def mass_mask(attn_map: np.ndarray, keep: float = 0.6) -> np.ndarray:
    """DINO's threshold: the smallest set of patches holding ``keep`` of the map's mass.

    Values are sorted ascending, normalised to sum 1 and accumulated; a patch is kept where the
    cumulative mass exceeds ``1 - keep`` (the rule of DINO's ``visualize_attention.py`` and of
    LOST's ``dino_seg``). Ties are broken by a stable sort (lower flat index first).
    """
    flat = np.asarray(attn_map, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    values = flat[order]
    total = values.sum()
    keep_sorted = np.cumsum(values / total) > (1.0 - keep)
    mask = np.zeros(flat.shape, dtype=bool)
    mask[order] = keep_sorted
    return mask.reshape(np.shape(attn_map))


def _mass_in_box(weights: np.ndarray, box_patches: Sequence[float]) -> float:
    """Fraction of ``weights`` (h, w) inside a box given in (fractional) patch units."""
    x0, y0, x1, y1 = box_patches
    h, w = weights.shape
    rows = np.clip(np.minimum(np.arange(h) + 1, y1) - np.maximum(np.arange(h), y0), 0, 1)
    cols = np.clip(np.minimum(np.arange(w) + 1, x1) - np.maximum(np.arange(w), x0), 0, 1)
    total = weights.sum()
    return float((rows[:, None] * cols[None, :] * weights).sum() / total)


def dino_attention_boxes(
    attn: Any,
    patch_size: int,
    image_hw: Sequence[int],
    keep: float = 0.6,
    *,
    heads: str | int = "mean",
    component: str = "all",
    clean_max: bool = False,
    orig_hw: Sequence[int] | None = None,
) -> list[Box]:
    """One box from a CLS attention map, or ``[]`` when the map holds no attention.

    Args:
        attn: ``(heads, h, w)`` or ``(h, w)`` CLS-to-patch attention (numpy or torch), as
            ``Features.attn[i]``; a leading batch axis of 1 is accepted.
        patch_size: pixels per patch ``p`` of the network input.
        image_hw: ``(H, W)`` of the network input (resized, unpadded); the grid must be
            ``(ceil(H/p), ceil(W/p))``.
        keep: fraction of the attention mass kept (DINO's 0.6).
        heads: ``"mean"`` averages the heads before thresholding (the seed's choice),
            ``"union"`` keeps a patch that any head's own mask keeps (DINO's per-head masks),
            an ``int`` uses that head only (LOST's ``dino_seg`` baseline uses head 0).
        component: ``"all"`` uses every foreground patch (the seed's rule); ``"largest"`` only the
            largest 4-connected component (LOST's ``dino_seg`` baseline).
        clean_max: seed 000's cleaning first: each map's (first) maximum, DINO's outlier patch,
            is replaced by the mean of its other values (``heads="mean"``: of the mean map).
        orig_hw: ``(H, W)`` of the original image; boxes are scaled from the input to it.

    Returns:
        ``[Box]`` with ``source="dino"`` and ``score`` = the fraction of the (head-averaged or
        selected head's) attention mass that lies inside the box, in ``[0, 1]``.
    """
    arr = to_numpy(attn).astype(np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"attn must be (heads, h, w) or (h, w), got shape {arr.shape}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if component not in ("all", "largest"):
        raise ValueError(f"component must be 'all' or 'largest', got {component!r}")
    check_geometry(arr.shape[1:], patch_size, image_hw)
    if arr.size == 0 or not np.isfinite(arr).all():
        return []
    arr = np.clip(arr, 0.0, None)  # softmax output; guard against tiny negative noise

    if clean_max:
        from headless.boxes.localize.handling import clean_attention

        if isinstance(heads, str) and heads == "mean":
            arr = clean_attention(arr.mean(axis=0))[None]
        else:
            arr = np.stack([clean_attention(a) for a in arr])
    if isinstance(heads, str) and heads == "mean":
        weights = arr.mean(axis=0)
        if weights.sum() <= 0:
            return []
        mask = mass_mask(weights, keep)
    elif isinstance(heads, str) and heads == "union":
        weights = arr.mean(axis=0)
        masks = [mass_mask(a, keep) for a in arr if a.sum() > 0]
        if not masks:
            return []
        mask = np.logical_or.reduce(masks)
    elif isinstance(heads, (int, np.integer)) and not isinstance(heads, bool):
        if not -arr.shape[0] <= heads < arr.shape[0]:
            raise ValueError(f"head {heads} out of range for {arr.shape[0]} heads")
        weights = arr[heads]
        if weights.sum() <= 0:
            return []
        mask = mass_mask(weights, keep)
    else:
        raise ValueError(f"heads must be 'mean', 'union' or a head index, got {heads!r}")

    if component == "largest":
        labels, count = label_components(mask)
        if count == 0:
            return []
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        mask = labels == (int(np.argmax(sizes)) + 1)
    if not mask.any():
        return []

    fg = np.argwhere(mask)  # (n, 2) rows, cols
    cy, cx = fg.mean(axis=0)
    n_rows = int(mask.any(axis=1).sum())
    n_cols = int(mask.any(axis=0).sum())
    # Patch (r, c) covers [r, r + 1) in patch units; its centre is r + 0.5.
    box_patches = (cx + 0.5 - n_cols / 2, cy + 0.5 - n_rows / 2,
                   cx + 0.5 + n_cols / 2, cy + 0.5 + n_rows / 2)
    p = float(patch_size)
    height, width = (float(v) for v in image_hw)
    x0, y0, x1, y1 = (v * p for v in box_patches)
    xyxy = (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
            min(max(x1, 0.0), width), min(max(y1, 0.0), height))
    score = _mass_in_box(weights, box_patches)
    return [make_box(xyxy, score=score, source="dino", image_hw=image_hw, orig_hw=orig_hw)]
