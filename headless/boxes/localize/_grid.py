"""Patch-grid helpers shared by the box methods.

Every method works on a grid of ``h x w`` patch tokens of a network input of ``image_hw = (H, W)``
pixels, where ``(h, w) = (ceil(H / p), ceil(W / p))`` (the input is zero-padded bottom/right to a
multiple of ``p``). The conventions below are those of the reference LOST / TokenCut / MOST code:

* tokens are row-major: token ``i`` sits at row ``i // w``, column ``i % w``;
* connected components use 4-connectivity (``scipy.ndimage.label``'s default cross);
* a component covering rows ``r0..r1`` and columns ``c0..c1`` gives the box
  ``[p * c0, p * r0, p * (c1 + 1), p * (r1 + 1)]`` in input pixels, and only ``x1`` / ``y1`` are
  clipped to ``W`` / ``H`` (the padding can push them past the image).

Boxes are then mapped from the network input to the original image with :func:`to_original`
(``orig_hw``), so a caller that resized the image gets boxes on the image the user sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from headless.boxes.types import Box

#: 4-connectivity: a patch touches the patches above, below, left and right, never diagonals.
FOUR_CONNECTIVITY = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def grid_shape(image_hw: Sequence[int], patch_size: int) -> tuple[int, int]:
    """The token grid ``(ceil(H / p), ceil(W / p))`` of an input of ``image_hw`` pixels."""
    height, width = (int(v) for v in image_hw)
    return math.ceil(height / patch_size), math.ceil(width / patch_size)


def check_geometry(grid: Sequence[int], patch_size: int, image_hw: Sequence[int]) -> None:
    """Raise a clear ``ValueError`` when grid, patch size and image size disagree.

    Boxes are computed in patch units and scaled by ``patch_size``; a grid that is not the
    padded grid of ``image_hw`` would silently give boxes in the wrong place.
    """
    if len(grid) != 2 or len(image_hw) != 2:
        raise ValueError(f"grid and image_hw must be (rows, cols) pairs, got {grid}, {image_hw}")
    if int(patch_size) <= 0:
        raise ValueError(f"patch_size must be positive, got {patch_size}")
    if min(int(v) for v in image_hw) <= 0:
        raise ValueError(f"image_hw must be positive, got {tuple(image_hw)}")
    expected = grid_shape(image_hw, int(patch_size))
    if tuple(int(v) for v in grid) != expected:
        raise ValueError(
            f"token grid {tuple(grid)} does not match an input of {tuple(image_hw)} pixels with "
            f"patch size {patch_size}: expected {expected} (ceil(H/p), ceil(W/p))"
        )


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array or a (CPU or GPU) torch tensor, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def as_tokens(feats: Any, grid: Sequence[int], name: str = "feats") -> np.ndarray:
    """Token features as a float32 ``(h * w, D)`` array.

    Accepts ``(T, D)``, ``(1, T, D)`` (one image of a batch) or ``(h, w, D)``; raises a
    ``ValueError`` naming the mismatch when the token count is not ``h * w`` or values are not
    finite.
    """
    arr = to_numpy(feats)
    h, w = (int(v) for v in grid)
    if arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[1] == h * w:
        arr = arr[0]
    elif arr.ndim == 3 and arr.shape[:2] == (h, w):
        arr = arr.reshape(h * w, arr.shape[2])
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (tokens, dim) over the grid {(h, w)}, got {arr.shape}")
    if arr.shape[0] != h * w:
        raise ValueError(
            f"{name} has {arr.shape[0]} tokens but the grid {(h, w)} holds {h * w} "
            "(drop the CLS and register tokens first)"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 4-connected components of a boolean grid (0 = background)."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=FOUR_CONNECTIVITY)
    return labels, int(count)


def seed_component(mask: np.ndarray, seed: int) -> np.ndarray | None:
    """The 4-connected component of ``mask`` holding the flat token index ``seed``.

    Returns ``None`` when the seed lies on the background (``mask`` false there): the reference
    LOST raises in that case, MOST skips the box; we let every method return no box.
    """
    labels, _ = label_components(mask)
    row, col = np.unravel_index(int(seed), labels.shape)
    cc = labels[row, col]
    if cc == 0:
        return None
    return labels == cc


def open_keeping_seed(mask: np.ndarray, seed: int, iterations: int = 0) -> np.ndarray:
    """``mask`` after ``iterations`` binary openings with the 4-cross, unless that drops the seed.

    An opening cuts the one-patch-wide bridges and spurs by which a thresholded similarity map
    leaks from the object into similar background; a seed the opening would erase (a thin object)
    keeps the unopened mask.
    """
    if iterations <= 0:
        return mask
    opened = ndimage.binary_opening(np.asarray(mask, dtype=bool), structure=FOUR_CONNECTIVITY,
                                    iterations=int(iterations))
    return opened if opened.reshape(-1)[int(seed)] else mask


def component_box(
    component: np.ndarray, patch_size: int, image_hw: Sequence[int]
) -> tuple[float, float, float, float]:
    """The reference box of a non-empty patch mask, in input pixels.

    ``x0 = p * col_min``, ``y0 = p * row_min``, ``x1 = p * (col_max + 1)``,
    ``y1 = p * (row_max + 1)``; only ``x1`` and ``y1`` are clipped to the image (``W``, ``H``).
    """
    rows, cols = np.nonzero(component)
    if rows.size == 0:
        raise ValueError("empty component has no box")
    p = int(patch_size)
    height, width = (int(v) for v in image_hw)
    x0 = float(p * cols.min())
    y0 = float(p * rows.min())
    x1 = float(min(p * (cols.max() + 1), width))
    y1 = float(min(p * (rows.max() + 1), height))
    return x0, y0, x1, y1


def to_original(
    xyxy: Sequence[float],
    image_hw: Sequence[int],
    orig_hw: Sequence[int] | None,
) -> tuple[float, float, float, float]:
    """Map a box from the network input (``image_hw``) to the original image (``orig_hw``).

    Each axis is scaled by ``orig / input`` (the resize is a plain per-axis rescale); with
    ``orig_hw=None`` the box is returned unchanged. The result is clipped to the original image.
    """
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    if orig_hw is None:
        return x0, y0, x1, y1
    in_h, in_w = (float(v) for v in image_hw)
    or_h, or_w = (float(v) for v in orig_hw)
    if or_h <= 0 or or_w <= 0:
        raise ValueError(f"orig_hw must be positive, got {tuple(orig_hw)}")
    sx, sy = or_w / in_w, or_h / in_h

    def clip(v: float, hi: float) -> float:
        return min(max(v, 0.0), hi)

    return clip(x0 * sx, or_w), clip(y0 * sy, or_h), clip(x1 * sx, or_w), clip(y1 * sy, or_h)


def make_box(
    xyxy: Sequence[float],
    *,
    score: float,
    source: str,
    image_hw: Sequence[int],
    orig_hw: Sequence[int] | None = None,
) -> Box:
    """A :class:`Box` in original-image pixels from a box in input pixels."""
    x0, y0, x1, y1 = to_original(xyxy, image_hw, orig_hw)
    return Box(x0, y0, x1, y1, label="object", score=float(score), source=source)


def keep_box(xyxy: Sequence[float], image_hw: Sequence[int]) -> bool:
    """MOST's filter: both sides > 16 px, 256 < area < 0.9 * image area (input pixels)."""
    x0, y0, x1, y1 = xyxy
    width, height = x1 - x0, y1 - y0
    area = width * height
    image_area = float(image_hw[0]) * float(image_hw[1])
    return width > 16 and height > 16 and 256 < area < 0.9 * image_area
