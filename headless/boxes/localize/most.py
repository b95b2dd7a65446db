"""MOST (Rambhatla et al., ICCV 2023): zero or more object boxes from patch-key correlations.

Steps, as in rssaketh/MOST ``object_discovery.py``:

1. affinity ``A = F F^T`` of the raw key features (float32, CPU);
2. box counting: each token's similarity map (``A[i]`` with values <= 0 set to 0, as an
   ``h x w`` image) is average-pooled with ``torch.nn.AdaptiveAvgPool2d`` to
   ``(h - k + 1, w - k + 1)`` for every ``k`` in ``ks`` (each capped at ``min(h, w)``,
   deduplicated); at each resolution the Shannon entropy (bits) of the *distinct pooled values*
   is compared with ``1 + log2(h - k + 1)``. A token whose map passes at >= half of the
   resolutions is a foreground token: object maps are localised and low in entropy,
   background maps are spread out and noisy;
3. DBSCAN (cityblock metric, ``eps = 2``, ``min_samples = 1``) over the foreground tokens'
   grid positions groups them into pools;
4. per pool (in order of their first token): the seed is the pool token of lowest degree
   (number of positive affinities, diagonal excluded; the reference maximises ``-degree``
   and takes the first such token), the pool tokens positively correlated with it sum their
   rows of ``A`` into a mask, and the box is the 4-connected component of ``mask > 0`` that
   holds the seed;
5. boxes with a side of 16 px or less, an area of 256 px^2 or less, or an area of 90 % of the
   input image or more are dropped (in network-input pixels, before mapping to ``orig_hw``).

For DINOv2 features (:mod:`headless.boxes.localize.handling`) two options use the CLS attention:
``pool_filter="attention"`` drops pools whose mean attention is below the image's mean (background
pools also pass the entropy test there; if none is above it, the most attended pool is kept), and
``seed="attention"`` seeds each pool at its most attended token. ``expansion="attention"``
replaces steps 2-4 by one box per prominent attention peak (:mod:`.most_peaks`: LOST's soft
attention expansion split among the peaks by a watershed); on photos with several raccoons it
finds 23 of 33 of them where the pools find 5. Its parameters (``mask_threshold``, ``prior``,
``prior_sigma``, ``opening``, ``peak_prominence``, ``peak_sigma``, ``min_mass``) are ignored by
the reference ``expansion="pools"``.

The entropy counts distinct float values, so results depend on dtype and device: everything here
runs in float32 on the CPU, which is what to compare against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from headless.boxes.localize._grid import (
    as_tokens,
    check_geometry,
    component_box,
    keep_box,
    make_box,
    seed_component,
)
from headless.boxes.localize.most_peaks import peak_regions
from headless.boxes.types import Box

#: The reference's pooling filter sizes (``--ks 1 2 3 4 5``).
DEFAULT_KS = (1, 2, 3, 4, 5)


def entropy_bits(values: np.ndarray) -> np.ndarray:
    """Per-row Shannon entropy (bits) of the distinct values of a ``(N, M)`` array.

    The reference calls ``torch.unique(row, return_counts=True)`` once per map; here every row is
    sorted once and runs of equal values are counted, giving the same counts for all rows at
    once. Each run's term ``f * log(f) / log(2)`` (``f = count / M``) is computed in float32 as
    in the reference; the per-row sum is accumulated in float64 (the reference sums in
    float32, a difference of ~1e-6 bits that matters only exactly at a threshold).
    """
    n_rows, n_cols = values.shape
    if n_rows == 0:
        return np.zeros(0)
    ordered = np.sort(values, axis=1)
    new_run = np.empty(ordered.shape, dtype=bool)
    new_run[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=new_run[:, 1:])
    starts = np.flatnonzero(new_run)
    lengths = np.diff(starts, append=n_rows * n_cols)
    freq = np.arange(n_cols + 1, dtype=np.float32) / np.float32(n_cols)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = freq * np.log(freq) / np.float32(math.log(2.0))
    term[0] = 0.0
    return -np.bincount(starts // n_cols, weights=term[lengths], minlength=n_rows)


def foreground_tokens(
    A: Any, grid: Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> np.ndarray:
    """Indices (sorted) of the tokens whose similarity maps pass MOST's entropy test."""
    import torch

    h, w = (int(v) for v in grid)
    maps = A.clone()
    maps[maps <= 0] = 0
    maps = maps.reshape(-1, 1, h, w)
    sizes = sorted({min(int(k), min(h, w)) for k in ks})
    passes = np.zeros(maps.shape[0], dtype=np.int64)
    for k in sizes:
        out_hw = (h - k + 1, w - k + 1)
        pooled = torch.nn.functional.adaptive_avg_pool2d(maps, out_hw)
        threshold = 1.0 + math.log(out_hw[0]) / math.log(2.0)
        passes += entropy_bits(pooled.reshape(maps.shape[0], -1).numpy()) < threshold
    return np.flatnonzero(passes >= 0.5 * len(sizes))


def cityblock_pools(coords: np.ndarray, eps: float = 2.0) -> np.ndarray:
    """Pool labels of ``(N, 2)`` grid positions: DBSCAN(eps, 'cityblock', min_samples=1).

    With ``min_samples=1`` every point is a core point, so DBSCAN's clusters are the connected
    components of the graph linking points at cityblock distance ``<= eps``. Labels are numbered
    in order of their first point, as scikit-learn numbers them.
    """
    n = coords.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    dist = np.abs(coords[:, None, :] - coords[None, :, :]).sum(axis=2)
    rows, cols = np.nonzero(dist <= eps)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    _, first = np.unique(raw, return_index=True)  # first point of each raw label 0..K-1
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[raw]


def most(
    feats: Any,
    grid: Sequence[int],
    patch_size: int,
    image_hw: Sequence[int],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    dbscan_eps: float = 2.0,
    filter_boxes: bool = True,
    seed: str = "degree",
    pool_filter: str = "none",
    expansion: str = "pools",
    mask_threshold: float = 0.15,
    prior: float = 0.5,
    prior_sigma: float = 1.0,
    opening: int = 1,
    peak_prominence: float = 0.4,
    peak_sigma: float = 1.0,
    min_mass: float = 0.3,
    attention: Any = None,
    orig_hw: Sequence[int] | None = None,
) -> list[Box]:
    """MOST's boxes (zero or more), one per pool that yields a box passing the size filter.

    Args:
        feats: ``(h * w, D)`` token features, row-major (numpy or CPU torch); the reference uses
            the last block's keys (``Features.k[i]``).
        grid: ``(h, w)`` token grid, ``(ceil(H/p), ceil(W/p))``.
        patch_size: pixels per patch of the network input.
        image_hw: ``(H, W)`` of the network input; ``x1`` / ``y1`` are clipped to it and the size
            filter is applied in its pixels.
        ks: pooling filter sizes of the box-counting analysis (paper: 1..5).
        dbscan_eps: cityblock radius joining foreground tokens into a pool (paper: 2).
        filter_boxes: ``False`` keeps the boxes the reference would drop as trivial.
        seed: ``"degree"`` (the reference: the pool's first lowest-degree token) or
            ``"attention"`` (the pool's most attended token).
        pool_filter: ``"none"`` (the reference) or ``"attention"``: keep only pools whose mean
            attention is at least the image's mean attention.
        expansion: ``"pools"`` (the reference: box counting, pools, per-pool expansion) or
            ``"attention"``: one box per prominent peak of ``attention`` (see
            :mod:`headless.boxes.localize.most_peaks`); ``seed`` and ``pool_filter`` are then
            unused.
        mask_threshold: ``expansion="attention"`` only: keep the soft mask above this share of
            its maximum.
        prior: ``expansion="attention"`` only: power of the smoothed-attention prior on the mask.
        prior_sigma: Gaussian width (patches) of that prior.
        opening: ``expansion="attention"`` only: binary openings (4-cross) of the mask.
        peak_prominence: ``expansion="attention"`` only: a peak's least drop (share of the
            maximum of the smoothed attention) before a higher peak; one box per such peak.
        peak_sigma: Gaussian width (patches) of the attention smoothing used to find peaks.
        min_mass: ``expansion="attention"`` only: drop boxes whose region holds less attention
            than this share of the best box's.
        attention: ``(h, w)`` CLS attention, needed by the attention options.
        orig_hw: ``(H, W)`` of the original image; boxes are scaled from the input to it.

    Returns:
        Boxes with ``source="most"``, in pool order, each scored by the fraction of the image's
        tokens that are foreground tokens of its pool (bigger, more certain objects score
        higher); with ``expansion="attention"`` by decreasing share of the attention mass in
        the box's region. ``[]`` when no token passes the entropy test or no box survives the
        filter.
    """
    import torch

    check_geometry(grid, patch_size, image_hw)
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive pooling sizes, got {tuple(ks)}")
    if seed not in ("degree", "attention"):
        raise ValueError(f"seed must be 'degree' or 'attention', got {seed!r}")
    if pool_filter not in ("none", "attention"):
        raise ValueError(f"pool_filter must be 'none' or 'attention', got {pool_filter!r}")
    if expansion not in ("pools", "attention"):
        raise ValueError(f"expansion must be 'pools' or 'attention', got {expansion!r}")
    if int(opening) != opening or opening < 0:
        raise ValueError(f"opening must be a whole number >= 0, got {opening!r}")
    tokens = as_tokens(feats, grid)
    n = tokens.shape[0]
    if n == 0:
        return []
    att = None
    if seed == "attention" or pool_filter == "attention" or expansion == "attention":
        if attention is None:
            raise ValueError("the attention options of MOST need the CLS attention map")
        att = np.asarray(attention, dtype=np.float64).reshape(-1)
        if att.shape[0] != n:
            raise ValueError(f"attention has {att.shape[0]} values for {n} tokens")
    h, w = (int(v) for v in grid)
    if expansion == "attention":
        regions = peak_regions(
            tokens, att, grid, patch_size, image_hw, mask_threshold=mask_threshold, prior=prior,
            prior_sigma=prior_sigma, opening=int(opening), peak_prominence=peak_prominence,
            peak_sigma=peak_sigma, min_mass=min_mass)
        return [make_box(xyxy, score=share, source="most", image_hw=image_hw, orig_hw=orig_hw)
                for xyxy, share in regions]
    F = torch.from_numpy(tokens)
    with torch.no_grad():
        A = F @ F.T
        seeds = foreground_tokens(A, grid, ks)
        if seeds.size == 0:
            return []
        coords = np.stack(np.unravel_index(seeds, (h, w)), axis=1)
        labels = cityblock_pools(coords, dbscan_eps)
        positive = A.clone()
        positive.fill_diagonal_(0)
        degree = (positive > 0).sum(dim=1).numpy()

        pools = list(range(int(labels.max()) + 1))
        if pool_filter == "attention":
            means = [att[seeds[labels == pool]].mean() for pool in pools]
            kept = [pool for pool, m in zip(pools, means) if m >= att.mean()]
            pools = kept or [pools[int(np.argmax(means))]]  # none above: the most attended
        boxes: list[Box] = []
        for pool in pools:
            members = seeds[labels == pool]
            if seed == "attention":
                pool_seed = int(members[np.argmax(att[members])])
            else:
                pool_seed = int(members[np.argmin(degree[members])])  # first of the lowest degree
            similar = members[(A[pool_seed, torch.from_numpy(members)] > 0).numpy()]
            mask = A[torch.from_numpy(similar), :].sum(dim=0)
            component = seed_component((mask > 0).numpy().reshape(h, w), pool_seed)
            if component is None:
                continue
            xyxy = component_box(component, patch_size, image_hw)
            if filter_boxes and not keep_box(xyxy, image_hw):
                continue
            score = members.size / n
            boxes.append(
                make_box(xyxy, score=score, source="most", image_hw=image_hw, orig_hw=orig_hw)
            )
    return boxes
