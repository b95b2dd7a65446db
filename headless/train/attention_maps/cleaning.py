"""Seed 000's cleaning of a CLS attention map into a crop's sampling density.

The maximum (DINO's outlier patch) is replaced by the mean of the other values, the map is
smoothed, optionally min-max scaled, and turned into a density by a softmax at a temperature:
:func:`clean_attention_density` for one map (per item in a loader), and
:func:`clean_attention_densities` for a stack (a whole dataset before training).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def replace_max_with_mean(attn_map: np.ndarray) -> np.ndarray:
    """The map with its (first) maximum replaced by the mean of the *other* values.

    DINO's CLS attention has one outlier patch that takes far more mass than the object (seed 000
    observed every crop landing on the same point without this step). The replacement is the mean
    of the remaining values, so the outlier does not inflate its own substitute.
    """
    a = np.array(attn_map, dtype=np.float64, copy=True)
    if a.size < 2:
        return a
    flat = a.reshape(-1)
    k = int(np.argmax(flat))
    flat[k] = (flat.sum() - flat[k]) / (flat.size - 1)
    return a


@lru_cache(maxsize=64)
def _gaussian_matrix(n: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``(n, n)`` matrix of a 1D Gaussian filter with half-sample reflected borders.

    Same weights and borders as ``scipy.ndimage.gaussian_filter(mode="reflect")``; as a matrix
    product it costs microseconds on the small maps here (the data loader calls it per item).
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    g /= g.sum()
    m = np.zeros((n, n))
    for i in range(n):
        for t, wt in zip(offsets, g):
            j = i + int(t)
            while j < 0 or j >= n:  # reflect (d c b a | a b c d | d c b a) until inside
                j = -j - 1 if j < 0 else 2 * n - j - 1
            m[i, j] += wt
    m.setflags(write=False)
    return m


def gaussian_smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    """2D Gaussian smoothing (``sigma`` in cells), equal to scipy's with ``mode="reflect"``."""
    a = np.asarray(a, dtype=np.float64)
    rows = _gaussian_matrix(a.shape[0], float(sigma))
    cols = _gaussian_matrix(a.shape[1], float(sigma))
    return rows @ a @ cols.T


def softmax_temperature(x: np.ndarray, temperature: float) -> np.ndarray:
    """``exp(x / T) / sum(exp(x / T))`` over all elements, computed stably (max subtracted)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(x, dtype=np.float64) / float(temperature)
    z = np.exp(z - z.max())
    return z / z.sum()


def clean_attention_density(
    attn_map: np.ndarray,
    temperature: float,
    *,
    sigma: float = 1.0,
    minmax: bool = True,
) -> np.ndarray:
    """Seed 000's cleaning of a CLS attention map into a probability density over grid cells.

    Steps, in order: mean over heads (if a ``(heads, h, w)`` stack is given), the maximum replaced
    by the mean of the other values, Gaussian smoothing with standard deviation ``sigma`` grid
    cells (0 disables; borders reflect), optional min-max scaling to [0, 1] (makes ``temperature``
    mean the same thing for every image and backbone), then a softmax with ``temperature``.
    Returns float64 ``(h, w)`` summing to 1. Low temperature concentrates the mass on the peak;
    high temperature tends to the uniform density.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = np.array(attn_map, dtype=np.float64)  # a copy: edited in place below
    if a.ndim == 3:
        a = a.mean(axis=0)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"an attention map must be (h, w) or (heads, h, w); got shape {a.shape}")
    # fused steps (the data loader calls this per item; each numpy call costs microseconds)
    flat = a.reshape(-1)
    total = float(flat.sum())
    if not math.isfinite(total):
        raise ValueError("the attention map has non-finite values (NaN or inf)")
    if flat.size > 1:  # replace_max_with_mean
        k = int(flat.argmax())
        flat[k] = (total - flat[k]) / (flat.size - 1)
    if sigma and sigma > 0:
        a = gaussian_smooth(a, float(sigma))
    lo, hi = float(a.min()), float(a.max())
    if minmax:
        # softmax_T((a - lo) / (hi - lo)), with the max subtracted inside the exponent
        z = (a - hi) / (temperature * (hi - lo)) if hi > lo else np.zeros_like(a)
    else:
        z = (a - hi) / temperature
    e = np.exp(z)
    return e / e.sum()


def clean_attention_densities(
    maps: np.ndarray,
    temperature: float,
    *,
    sigma: float = 1.0,
    minmax: bool = True,
) -> np.ndarray:
    """:func:`clean_attention_density` for a stack ``(N, h, w)`` of maps at once (same result).

    Used to prepare a whole dataset's densities before training, so the loader does none of it.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = np.array(maps, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"expected a stack of maps (N, h, w), got shape {a.shape}")
    n, h, w = a.shape
    if n == 0:
        return a
    flat = a.reshape(n, -1)
    total = flat.sum(axis=1)
    bad = ~np.isfinite(total)
    if bad.any():
        raise ValueError(f"attention map {int(np.argmax(bad))} has non-finite values")
    if flat.shape[1] > 1:
        k = flat.argmax(axis=1)
        rows = np.arange(n)
        flat[rows, k] = (total - flat[rows, k]) / (flat.shape[1] - 1)
    if sigma and sigma > 0:
        a = _gaussian_matrix(h, float(sigma)) @ a @ _gaussian_matrix(w, float(sigma)).T
    lo = a.min(axis=(1, 2), keepdims=True)
    hi = a.max(axis=(1, 2), keepdims=True)
    if minmax:
        span = hi - lo
        z = np.where(span > 0, (a - hi) / (temperature * np.where(span > 0, span, 1.0)), 0.0)
    else:
        z = (a - hi) / temperature
    e = np.exp(z)
    return e / e.sum(axis=(1, 2), keepdims=True)
