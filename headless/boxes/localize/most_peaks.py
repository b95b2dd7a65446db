"""MOST's ``expansion="attention"``: one box per prominent CLS-attention peak (DINOv2 preset).

On DINOv2's centred keys MOST's box counting (entropy test, pools, per-pool expansion) finds few
of the raccoons on photos with several of them (5 of 33 on raccoon_voc): the pools follow the
similarity maps, which light up every raccoon at once, and their per-pool masks spill over the
whole group. The CLS attention instead has one bump per animal. This step

1. builds LOST's soft mask (:func:`headless.boxes.localize.lost.attention_expansion`: cosine
   similarity to the attention-weighted mean token, times the smoothed attention to the power
   ``prior``, kept above ``mask_threshold * max``, opened ``opening`` times);
2. finds the peaks of the attention smoothed over ``peak_sigma`` patches whose *prominence*
   (``skimage.morphology.h_maxima`` on the map scaled to max 1) is at least
   ``peak_prominence``: a bump must drop by that much before reaching a higher one, so the
   several small maxima on one animal (eyes, ears) count once;
3. splits the mask among the peaks inside it by a watershed of the smoothed attention
   (4-connected), takes each basin's 4-connected part that holds its peak and its box;
4. drops boxes failing MOST's size filter and those whose share of the attention mass is below
   ``min_mass`` times the largest share (background bumps).

Each box's score is its region's share of the attention mass. Costs O(tokens x dim), ~2 ms per
photo at 448 px, below the box counting's O(tokens^2) pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from headless.boxes.localize._grid import FOUR_CONNECTIVITY, component_box, keep_box


def attention_peaks(smoothed: np.ndarray, prominence: float, allowed: np.ndarray) -> np.ndarray:
    """``(K, 2)`` grid positions of the peaks of ``smoothed`` with that relative prominence.

    One position (the highest) per regional maximum of ``h_maxima(smoothed / max, prominence)``
    that lies in ``allowed``, sorted by decreasing height.
    """
    from skimage.morphology import h_maxima

    top = float(smoothed.max()) if smoothed.size else 0.0
    if top <= 0:
        return np.zeros((0, 2), dtype=int)
    scaled = smoothed / top
    if prominence > 0:
        plateaus = h_maxima(scaled, min(float(prominence), 1.0)).astype(bool)
    else:
        plateaus = scaled == ndimage.maximum_filter(scaled, size=3, mode="nearest")
    labels, count = ndimage.label(plateaus, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros((0, 2), dtype=int)
    flat = ndimage.maximum_position(scaled, labels, index=np.arange(1, count + 1))
    peaks = np.asarray(flat, dtype=int).reshape(-1, 2)
    peaks = peaks[allowed[peaks[:, 0], peaks[:, 1]]]
    order = np.argsort(-scaled[peaks[:, 0], peaks[:, 1]], kind="stable")
    return peaks[order]


def peak_regions(
    tokens: np.ndarray,
    attention: np.ndarray,
    grid: Sequence[int],
    patch_size: int,
    image_hw: Sequence[int],
    *,
    mask_threshold: float,
    prior: float,
    prior_sigma: float,
    opening: int,
    peak_prominence: float,
    peak_sigma: float,
    min_mass: float,
) -> list[tuple[tuple[float, float, float, float], float]]:
    """``[(xyxy in input pixels, attention share)]``, by decreasing share (see module doc).

    The options are :func:`~headless.boxes.localize.most.most`'s (its defaults, recorded in
    the resolved settings, are the only ones)."""
    from skimage.segmentation import watershed

    from headless.boxes.localize.handling import soft_mask
    from headless.boxes.localize.lost import attention_expansion

    h, w = (int(v) for v in grid)
    att = np.clip(np.asarray(attention, dtype=np.float64).reshape(h, w), 0.0, None)
    total = float(att.sum())
    if total <= 0:
        return []
    M, mask = soft_mask(attention_expansion(tokens, att.reshape(-1)), att, (h, w), prior,
                        prior_sigma, mask_threshold)
    if float(M.max()) <= 0:
        return []
    if opening > 0:
        opened = ndimage.binary_opening(mask, structure=FOUR_CONNECTIVITY,
                                        iterations=int(opening))
        mask = opened if opened.any() else mask
    smoothed = ndimage.gaussian_filter(att, float(peak_sigma)) if peak_sigma > 0 else att
    peaks = attention_peaks(smoothed, peak_prominence, mask)
    if peaks.shape[0] == 0:  # no bump inside the mask: seed at the strongest response
        peaks = np.array([np.unravel_index(int(np.argmax(M)), (h, w))], dtype=int)
    markers = np.zeros((h, w), dtype=np.int64)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, peaks.shape[0] + 1)
    basins = watershed(-smoothed, markers, mask=mask, connectivity=1)
    found = []
    for j, (r, c) in enumerate(peaks, start=1):
        parts, _ = ndimage.label(basins == j, structure=FOUR_CONNECTIVITY)
        if parts[r, c] == 0:
            continue
        region = parts == parts[r, c]
        xyxy = component_box(region, patch_size, image_hw)
        if keep_box(xyxy, image_hw):
            found.append((xyxy, float(att[region].sum()) / total))
    if not found:
        return []
    best = max(share for _, share in found)
    found = [item for item in found if item[1] >= float(min_mass) * best]
    return sorted(found, key=lambda item: -item[1])
