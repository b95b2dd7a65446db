"""Classical per-pixel features: the multiscale filter bank of trainable-segmentation tools.

Weka / ilastik-style features need no weights at all, so the whole scribble workflow runs
offline with them. At every scale ``sigma`` (default 0.7, 1.4, 2.8, 5.6, 11.2 px: octaves over
ilastik's default range of 0.7 to 10 px) the bank holds

* the Gaussian-smoothed image ``G_s`` and its gradient magnitude,
* the Hessian of ``G_s``: Laplacian (trace) and both eigenvalues,
* the structure tensor (gradients of ``G_1``, integrated over ``sigma``): both eigenvalues,
* local mean, variance, minimum and maximum in a square window of radius ``ceil(sigma)``,

plus the raw intensity and the differences of Gaussians of neighbouring scales.

Speed comes from three habits: every filter is separable and runs in C (``scipy.ndimage``),
derivatives are 3-tap differences of the already smoothed image (so each scale smooths once,
not once per derivative), and everything stays float32. With more than two cores the scales
run on a small thread pool (scipy releases the GIL inside its filters). Gaussians are
truncated at 3 sigma.

Colour: a colour image gets the full bank on its luminance (Rec. 601 weights) plus the raw and
Gaussian-smoothed value of each colour channel at every scale, so colour is available to the
classifier without tripling the bank. A 2D image is grey. The number of features therefore
depends on the image's format (grey or colour), never on its content: use
:func:`classical_feature_names` to know it in advance.

Borders are reflected, and every filter is shift-invariant, so the features are translation
equivariant away from the borders (``tests/features/test_classical.py`` checks it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi

from headless.images import ImageError, squeeze_leading, to_float01, to_rgb01

DEFAULT_SIGMAS: tuple[float, ...] = (0.7, 1.4, 2.8, 5.6, 11.2)
PER_SCALE: tuple[str, ...] = (
    "gaussian", "gradient_magnitude", "laplacian", "hessian_eig1", "hessian_eig2",
    "structure_eig1", "structure_eig2", "mean", "variance", "minimum", "maximum",
)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601
TRUNCATE = 3.0
STRUCTURE_INNER_SIGMA = 1.0
_D1 = np.array([-0.5, 0.0, 0.5], np.float32)  # central first difference
_D2 = np.array([1.0, -2.0, 1.0], np.float32)  # second difference


def classical_feature_names(
    sigmas: Sequence[float] = DEFAULT_SIGMAS, colour: bool = False
) -> list[str]:
    """Names of the channels :func:`classical_features` returns, in order."""
    sigmas = _check_sigmas(sigmas)
    names = ["intensity"]
    for s in sigmas:
        names += [f"{n}_s{s:g}" for n in PER_SCALE]
    names += [f"dog_s{b:g}-s{a:g}" for a, b in zip(sigmas[:-1], sigmas[1:])]
    if colour:
        for c in "rgb":
            names += [f"{c}_intensity"] + [f"{c}_gaussian_s{s:g}" for s in sigmas]
    return names


def classical_features(
    image: np.ndarray, sigmas: Sequence[float] = DEFAULT_SIGMAS, *, workers: int | None = None
) -> np.ndarray:
    """The filter bank of ``image`` as float32 ``(H, W, F)``; finite for any finite input.

    ``image``: ``(H, W)`` grey or ``(H, W, 3|4)`` / ``(3|4, H, W)`` colour, any numeric dtype
    (scaled to [0, 1] as :func:`headless.images.to_float01` does, so 8-bit images of a folder
    share one scale). ``workers``: threads over the scales (default: one fewer than the CPU
    cores, at most 4). The result may be
    a channels-last view of a channels-first block; call ``np.ascontiguousarray`` if you need
    C order.
    """
    sigmas = _check_sigmas(sigmas)
    grey, colour = _as_luminance(image)
    h, w = grey.shape
    n = len(sigmas)
    n_grey = 1 + len(PER_SCALE) * n + (n - 1)
    n_colour = 0 if colour is None else 3 * (1 + n)
    out = np.empty((n_grey + n_colour, h, w), np.float32)
    out[0] = grey

    g1 = ndi.gaussian_filter(grey, STRUCTURE_INNER_SIGMA, truncate=TRUNCATE)
    gx = ndi.correlate1d(g1, _D1, axis=1)
    gy = ndi.correlate1d(g1, _D1, axis=0)
    tensor = (gx * gx, gx * gy, gy * gy)
    squared = grey * grey
    del g1, gx, gy

    def one_scale(i: int) -> None:
        _scale_features(grey, squared, tensor, sigmas[i], out[1 + i * len(PER_SCALE):
                                                              1 + (i + 1) * len(PER_SCALE)])

    jobs = list(range(n))[::-1]  # largest scale first: it is the slowest
    n_workers = _workers(workers, n)
    if n_workers > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(one_scale, jobs))
    else:
        for i in jobs:
            one_scale(i)

    base = 1 + len(PER_SCALE) * n
    for i in range(n - 1):
        np.subtract(out[1 + (i + 1) * len(PER_SCALE)], out[1 + i * len(PER_SCALE)],
                    out=out[base + i])
    if colour is not None:
        k = n_grey
        for c in range(3):
            ch = np.ascontiguousarray(colour[..., c])
            out[k] = ch
            for j, s in enumerate(sigmas):
                ndi.gaussian_filter(ch, s, truncate=TRUNCATE, output=out[k + 1 + j])
            k += 1 + n
    return np.moveaxis(out, 0, -1)


def _scale_features(
    grey: np.ndarray, squared: np.ndarray, tensor: tuple[np.ndarray, ...], sigma: float,
    out: np.ndarray,
) -> None:
    """Fill ``out`` (len(PER_SCALE), H, W) with the features of one scale."""
    g = ndi.gaussian_filter(grey, sigma, truncate=TRUNCATE, output=out[0])
    dx = ndi.correlate1d(g, _D1, axis=1)
    dy = ndi.correlate1d(g, _D1, axis=0)
    np.hypot(dx, dy, out=out[1])
    dxx = ndi.correlate1d(g, _D2, axis=1)
    dyy = ndi.correlate1d(g, _D2, axis=0)
    dxy = ndi.correlate1d(dx, _D1, axis=0)
    del dx, dy
    np.add(dxx, dyy, out=out[2])
    _sym_eigvals(dxx, dxy, dyy, out[3], out[4])
    del dxx, dxy, dyy
    sxx, sxy, syy = (ndi.gaussian_filter(t, sigma, truncate=TRUNCATE) for t in tensor)
    _sym_eigvals(sxx, sxy, syy, out[5], out[6])
    del sxx, sxy, syy
    size = 2 * window_radius(sigma) + 1
    mean = ndi.uniform_filter(grey, size, output=out[7])
    var = ndi.uniform_filter(squared, size, output=out[8])
    var -= mean * mean
    np.maximum(var, 0.0, out=var)  # rounding can make tiny negatives
    ndi.minimum_filter(grey, size, output=out[9])
    ndi.maximum_filter(grey, size, output=out[10])


def window_radius(sigma: float) -> int:
    """Radius of the square window of the mean / variance / min / max filters at ``sigma``."""
    return max(1, int(np.ceil(sigma - 1e-9)))


def _sym_eigvals(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, big: np.ndarray, small: np.ndarray
) -> None:
    """Eigenvalues of the symmetric 2x2 matrices ``[[a, b], [b, c]]``, larger first (in place)."""
    trace = a + c
    root = np.subtract(a, c)
    root *= root
    b2 = b * b
    b2 *= 4.0
    root += b2
    np.sqrt(root, out=root)
    np.add(trace, root, out=big)
    big *= 0.5
    np.subtract(trace, root, out=small)
    small *= 0.5


def _as_luminance(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(grey float32 (H, W) in [0, 1], colour (H, W, 3) or None) of any supported image."""
    a = squeeze_leading(np.asarray(image))
    if a.ndim == 2:
        if min(a.shape) < 1:
            raise ImageError(f"the image is empty (shape {a.shape})")
        return np.ascontiguousarray(to_float01(a), np.float32), None
    rgb = to_rgb01(a)  # raises a clear ImageError for stacks and odd shapes
    grey = np.ascontiguousarray(rgb @ LUMA, np.float32)
    return grey, rgb


def _check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(s) for s in sigmas)
    if not out:
        raise ValueError("at least one scale (sigma) is needed")
    if any(not np.isfinite(s) or s <= 0 for s in out):
        raise ValueError(f"scales must be positive numbers, got {list(sigmas)}")
    if list(out) != sorted(set(out)):
        raise ValueError(f"scales must be distinct and increasing, got {list(sigmas)}")
    return out


def _workers(workers: int | None, n_jobs: int) -> int:
    if workers is None:  # leave one core to the GUI / other work; a 2-core machine runs serially
        workers = min(4, (os.cpu_count() or 1) - 1)
    return max(1, min(int(workers), n_jobs))
