"""The classical filter bank over images too large to hold whole, tile by tile.

``classical_features`` of a 10000 x 10000 image is 60 channels x 10^8 px x 4 B = 24 GB; the
scribble workflow never needs it whole: training reads the scribbled pixels, prediction a
linear map of every pixel. Here each tile is computed with a halo wide enough for every filter
of the bank (Gaussians truncated at 3 sigma, derivative taps, the structure tensor's inner
smoothing, the min/max/mean windows), so a tile's inner pixels get the values of the whole image,
borders included (reflected at the image's edges exactly as the untiled bank; equal up to float
rounding of the running-sum mean filters). Memory is one tile's bank at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from headless.features.classical import (
    DEFAULT_SIGMAS,
    STRUCTURE_INNER_SIGMA,
    TRUNCATE,
    classical_feature_names,
    classical_features,
    window_radius,
)
from headless.images import squeeze_leading

TILE_BYTES = 512 * 2**20  # one tile's bank (halo included) stays under this


def classical_halo(sigmas: Sequence[float] = DEFAULT_SIGMAS) -> int:
    """Pixels of context a tile needs so its inner values equal the whole image's."""
    smax = max(float(s) for s in sigmas)
    gauss = int(TRUNCATE * smax + 0.5)
    inner = int(TRUNCATE * STRUCTURE_INNER_SIGMA + 0.5) + 1  # G_1 then a central difference
    return max(gauss + 2, inner + gauss, window_radius(smax)) + 2


def n_classical(image: np.ndarray, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> int:
    a = squeeze_leading(np.asarray(image))
    return len(classical_feature_names(sigmas, colour=a.ndim == 3))


def classical_bytes(shape: tuple[int, int], n_features: int) -> int:
    """Peak bytes of the untiled bank of an image: the output plus the working copies."""
    h, w = shape
    return int(h) * int(w) * 4 * (int(n_features) + 12)


def tile_side(n_features: int, halo: int, budget: int = TILE_BYTES) -> int:
    """The side of square tiles whose bank (with halo and working copies) fits ``budget``."""
    side = int(math.sqrt(budget / (4 * (n_features + 12)))) - 2 * halo
    return max(64, side)


def tiles(shape: tuple[int, int], side: int, halo: int
          ) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice], tuple[slice, slice]]]:
    """``(inner, padded, inner-within-padded)`` slices covering ``shape`` in ``side`` tiles."""
    h, w = shape
    for r0 in range(0, h, side):
        for c0 in range(0, w, side):
            r1, c1 = min(h, r0 + side), min(w, c0 + side)
            pr0, pc0 = max(0, r0 - halo), max(0, c0 - halo)
            pr1, pc1 = min(h, r1 + halo), min(w, c1 + halo)
            yield ((slice(r0, r1), slice(c0, c1)), (slice(pr0, pr1), slice(pc0, pc1)),
                   (slice(r0 - pr0, r1 - pr0), slice(c0 - pc0, c1 - pc0)))


def _scaled(image: np.ndarray) -> np.ndarray:
    """The image as the bank reads it, scaled to [0, 1] as a whole (a tile alone would get its
    own min / max): grey ``(H, W)`` or colour ``(H, W, 3)``."""
    from headless.images import to_float01, to_rgb01

    a = squeeze_leading(np.asarray(image))
    return to_float01(a) if a.ndim == 2 else to_rgb01(a)


def _bank_tiles(scaled: np.ndarray, sigmas: Sequence[float], side: int | None
                ) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray]]:
    """The tiles of a scaled image: ``(inner, padded, inner-within-padded)`` slices."""
    halo = classical_halo(sigmas)
    side = side or tile_side(n_classical(scaled, sigmas), halo)
    return tiles(scaled.shape[:2], side, halo)


def classical_features_at(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray,
    sigmas: Sequence[float] = DEFAULT_SIGMAS, side: int | None = None,
) -> np.ndarray:
    """Bank rows ``(N, F)`` at pixels ``(rows, cols)``, computing only tiles that hold some."""
    scaled = _scaled(image)
    rows, cols = np.asarray(rows), np.asarray(cols)
    out = np.empty((len(rows), n_classical(scaled, sigmas)), np.float32)
    for inner, padded, _ in _bank_tiles(scaled, sigmas, side):
        hit = ((rows >= inner[0].start) & (rows < inner[0].stop)
               & (cols >= inner[1].start) & (cols < inner[1].stop))
        if not hit.any():
            continue
        f = classical_features(scaled[padded], sigmas)
        out[hit] = f[rows[hit] - padded[0].start, cols[hit] - padded[1].start]
    return out


def iter_classical_tiles(
    image: np.ndarray, sigmas: Sequence[float] = DEFAULT_SIGMAS, side: int | None = None,
) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """``(inner slices, bank of those pixels (h, w, F))`` for every tile, in raster order."""
    scaled = _scaled(image)
    for inner, padded, within in _bank_tiles(scaled, sigmas, side):
        yield inner, classical_features(scaled[padded], sigmas)[within]


def classical_linear(
    image: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
    sigmas: Sequence[float] = DEFAULT_SIGMAS, side: int | None = None,
) -> np.ndarray:
    """``features @ weight.T (+ bias)`` as ``(H, W, C)`` float32, one tile's bank at a time."""
    scaled = _scaled(image)
    nf = n_classical(scaled, sigmas)
    weight = np.asarray(weight, np.float32)
    if weight.shape[1] != nf:
        raise ValueError(f"the linear map has {weight.shape[1]} inputs, the bank {nf} channels")
    out = np.empty((*scaled.shape[:2], weight.shape[0]), np.float32)
    wt = np.ascontiguousarray(weight.T)
    for inner, padded, within in _bank_tiles(scaled, sigmas, side):
        np.matmul(classical_features(scaled[padded], sigmas)[within], wt, out=out[inner])
    if bias is not None:
        out += np.asarray(bias, np.float32)
    return out
