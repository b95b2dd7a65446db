"""LOST (Simeoni et al., BMVC 2021): one object box from patch-key correlations.

Steps, as in valeoai/LOST ``object_discovery.py``:

1. affinity ``A = F F^T`` of the raw (unnormalised) key features, float32;
2. degree of each patch = number of *positive* entries of its row, diagonal excluded;
3. the seed is the lowest-degree patch: background patches correlate with much of the image,
   object patches only with their object, which covers less of it;
4. seed expansion: among the ``k`` lowest-degree patches keep those positively correlated with
   the seed, and sum their rows of ``A`` into a map ``M``;
5. the box of the 4-connected component of ``M > 0`` that holds the seed.

Options for features where the degree says nothing (DINOv2, see
:mod:`headless.boxes.localize.handling`): ``seed="attention"`` takes the peak of the (cleaned)
CLS attention as the seed and the ``k`` most attended patches as the expansion set, and
``mask_threshold`` keeps ``M > mask_threshold * max(M)`` instead of ``M > 0``. Three more
options, measured on DINOv2's centred keys (raccoon photos, CorLoc 81 -> 86.5):
``expansion="attention"`` replaces step 4 by a soft expansion, ``M`` = each token's cosine
similarity to the attention-weighted mean of the (L2-normalised) tokens, so the whole attended
region votes, not the ``k`` patches nearest the peak; ``prior`` multiplies ``M`` (clipped at 0)
by the smoothed attention to that power, which keeps the box off other "foreground-like"
objects (a person or dog beside the raccoon); ``opening`` opens the mask before step 5, cutting
the thin bridges by which it leaks into the background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from headless.boxes.localize._grid import (
    as_tokens,
    check_geometry,
    component_box,
    make_box,
    open_keeping_seed,
    seed_component,
)
from headless.boxes.types import Box


def degree_order(A: Any, tie_break: str = "reference") -> tuple[Any, Any]:
    """Patches sorted by increasing degree, and the degrees (torch tensors).

    ``tie_break="reference"`` reproduces the reference exactly: its scores are ``-degree`` in
    float32 sorted with ``torch.argsort(..., descending=True)``, which is not a stable sort, so
    among tied degrees the order is torch's (deterministic on CPU for a given torch version).
    ``"stable"`` breaks ties by the lower token index (raster order) instead.
    """
    import torch

    pos = A.clone()
    pos.fill_diagonal_(0)
    degree = (pos > 0).sum(dim=1)
    cent = -degree.to(torch.float32)
    if tie_break == "reference":
        order = torch.argsort(cent, descending=True)
    elif tie_break == "stable":
        order = torch.sort(cent, descending=True, stable=True).indices
    else:
        raise ValueError(f"tie_break must be 'reference' or 'stable', got {tie_break!r}")
    return order, degree


def lost(
    feats: Any,
    grid: Sequence[int],
    patch_size: int,
    image_hw: Sequence[int],
    k: int = 100,
    *,
    tie_break: str = "reference",
    seed: str = "degree",
    attention: Any = None,
    mask_threshold: float = 0.0,
    expansion: str = "degree",
    prior: float = 0.0,
    prior_sigma: float = 1.0,
    opening: int = 0,
    orig_hw: Sequence[int] | None = None,
) -> list[Box]:
    """LOST's single box, or ``[]`` when the seed has no positive correlation (e.g. zero features).

    Args:
        feats: ``(h * w, D)`` token features, row-major over the grid (numpy or CPU torch); the
            reference uses the last block's keys (``Features.k[i]``).
        grid: ``(h, w)`` token grid, ``(ceil(H/p), ceil(W/p))``.
        patch_size: pixels per patch of the network input.
        image_hw: ``(H, W)`` of the network input (resized, unpadded); ``x1`` / ``y1`` are
            clipped to it.
        k: number of lowest-degree patches considered for the seed expansion (paper: 100).
        tie_break: ``"reference"`` (default, the reference's unstable argsort) or ``"stable"``.
        seed: ``"degree"`` (the reference) or ``"attention"``: the seed is the most attended
            patch of ``attention`` and the expansion set its ``k`` most attended patches.
        attention: ``(h, w)`` CLS attention (cleaned by the caller), needed by
            ``seed="attention"``.
        mask_threshold: keep ``M > mask_threshold * max(M)`` (0 = the reference's ``M > 0``).
        expansion: ``"degree"`` (the reference: ``M`` sums the rows of ``A`` of the expansion
            set) or ``"attention"``: ``M`` = cosine similarity to the ``attention``-weighted mean
            of the L2-normalised tokens.
        prior: ``M`` (clipped at 0) times the ``attention`` map smoothed over ``prior_sigma``
            patches and scaled to max 1, to this power (0 = none, the reference).
        prior_sigma: Gaussian width of that prior, in patches.
        opening: binary openings (4-cross) of the thresholded mask before taking the seed's
            component (0 = none, the reference); skipped where it would erase the seed.
        orig_hw: ``(H, W)`` of the original image; boxes are scaled from the input to it.

    Returns:
        ``[Box]`` with ``source="lost"`` and ``score = 1 - degree(seed) / (T - 1)``: the fraction
        of the other patches that the seed is *not* positively correlated with. It is high when
        the seed stands on a compact, distinctive object and low when it is barely
        distinguishable from the background.
    """
    import torch

    check_geometry(grid, patch_size, image_hw)
    tokens = as_tokens(feats, grid)
    n = tokens.shape[0]
    if n == 0 or k < 1:
        return []
    if seed not in ("degree", "attention"):
        raise ValueError(f"seed must be 'degree' or 'attention', got {seed!r}")
    if expansion not in ("degree", "attention"):
        raise ValueError(f"expansion must be 'degree' or 'attention', got {expansion!r}")
    if int(opening) != opening or opening < 0:
        raise ValueError(f"opening must be a whole number >= 0, got {opening!r}")
    uses_attention = seed == "attention" or expansion == "attention" or prior > 0
    att = None
    if uses_attention:
        if attention is None:
            raise ValueError(f"seed={seed!r}, expansion={expansion!r}, prior={prior} need the "
                             "CLS attention map (attention=...)")
        att = np.asarray(attention, dtype=np.float64).reshape(-1)
        if att.shape[0] != n:
            raise ValueError(f"attention has {att.shape[0]} values for {n} tokens")
    h, w = (int(v) for v in grid)
    F = torch.from_numpy(tokens)
    with torch.no_grad():
        A = F @ F.T
        order, degree = degree_order(A, tie_break)
        if seed == "attention":
            by_attention = torch.from_numpy(np.argsort(-att, kind="stable").copy())
            seed_index = int(by_attention[0])
            potentials = by_attention[:k]
        else:
            seed_index = int(order[0])
            potentials = order[:k]
        if expansion == "attention":
            M = attention_expansion(tokens, att)
        else:
            similars = potentials[A[seed_index, potentials] > 0.0]
            M = A[similars, :].sum(dim=0).numpy()
    from headless.boxes.localize.handling import soft_mask

    M, mask = soft_mask(M, att, (h, w), prior, prior_sigma, mask_threshold)
    mask = open_keeping_seed(mask, seed_index, int(opening))
    component = seed_component(mask, seed_index)
    if component is None and seed == "attention" and mask.any():
        # the seed fell below the threshold: take the component of the strongest response
        component = seed_component(mask, int(np.argmax(M)))
    if component is None:
        return []
    xyxy = component_box(component, patch_size, image_hw)
    score = 1.0 - float(degree[seed_index]) / max(n - 1, 1)
    return [make_box(xyxy, score=score, source="lost", image_hw=image_hw, orig_hw=orig_hw)]


def attention_expansion(tokens: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """Cosine similarity of each token to the ``attention``-weighted mean of the unit tokens.

    The soft counterpart of LOST's expansion set: every patch votes for the object's prototype
    in proportion to its attention, so one bright patch on a neighbouring object cannot pull
    the prototype there the way it can enter a top-``k`` set.
    """
    t = np.asarray(tokens, dtype=np.float64)
    unit = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    weights = np.clip(np.asarray(attention, dtype=np.float64).reshape(-1), 0.0, None)
    total = float(weights.sum())
    if total <= 0:
        return np.zeros(t.shape[0])
    return unit @ (weights @ unit / total)
