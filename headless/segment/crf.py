"""Dense CRF refinement of class probabilities (Krähenbühl & Koltun, via pydensecrf2).

The classifier decides each pixel alone; the fully connected CRF adds two Potts kernels that
reward neighbouring pixels for agreeing: a Gaussian (position only: removes isolated specks)
and a bilateral (position and intensity: labels follow the image's edges). Mean-field inference
returns refined probabilities.

Defaults are small kernels (Gaussian 1 px; bilateral 3 px and 3 grey levels): these refine the
boundaries of per-pixel classifiers without erasing small objects, whereas the DeepLab-era values
(80 px, 13 levels), made for blocky CNN outputs on photos, wipe out structures a few pixels wide.
The guide image is contrast-stretched per image (0.5 and 99.5 percentiles to 0..255), so
``bilateral_srgb`` means the same on a dim 16-bit micrograph and on an 8-bit photo.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from headless.images import ImageError, squeeze_leading, to_float01, to_rgb01


@dataclass(frozen=True)
class CRFParams:
    """Kernel widths (pixels, grey levels of the stretched guide), weights and iterations."""

    gaussian_sxy: float = 1.0
    gaussian_compat: float = 1.0
    bilateral_sxy: float = 3.0
    bilateral_srgb: float = 3.0
    bilateral_compat: float = 3.0
    iterations: int = 5
    min_prob: float = 1e-5  # probabilities are clipped here before -log (finite unaries)

    def __post_init__(self) -> None:
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CRF {name} must be positive, got {getattr(self, name)}")
        for name in ("gaussian_compat", "bilateral_compat"):
            if getattr(self, name) < 0:
                raise ValueError(f"CRF {name} must not be negative, got {getattr(self, name)}")
        if int(self.iterations) < 1:
            raise ValueError(f"CRF iterations must be at least 1, got {self.iterations}")
        if not 0 < self.min_prob < 1:
            raise ValueError("CRF min_prob must lie in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def crf_guide(image: np.ndarray) -> np.ndarray:
    """The image as C-contiguous uint8 ``(H, W, 3)``, contrast-stretched per image."""
    a = squeeze_leading(np.asarray(image))
    rgb = np.repeat(to_float01(a)[..., None], 3, axis=-1) if a.ndim == 2 else to_rgb01(a)
    lo, hi = np.percentile(rgb, [0.5, 99.5])
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    out = np.clip((rgb - lo) * scale, 0, 255)
    return np.ascontiguousarray(np.round(out).astype(np.uint8))


#: Bytes per pixel of pydensecrf's inference beyond the unaries: the permutohedral lattice of the
#: bilateral kernel (5-D: 6 vertices per pixel, offsets and weights) and its blur buffers
CRF_BYTES_PER_PIXEL = 300


def crf_bytes(shape: tuple[int, int], n_classes: int) -> int:
    """Estimated peak bytes of :func:`crf_refine` on an ``(H, W)`` image with ``n_classes``."""
    h, w = shape
    return int(h) * int(w) * (int(n_classes) * 4 * 6 + CRF_BYTES_PER_PIXEL)


def check_crf_memory(shape: tuple[int, int], n_classes: int, limit: int | None = None) -> None:
    """Refuse, with the estimate, a dense CRF that would not fit in memory (before any work)."""
    from headless.features.highres.memory import MemoryLimitError, _fmt_bytes, memory_limit

    need = crf_bytes(shape, n_classes)
    have = memory_limit(limit)
    if need > have:
        raise MemoryLimitError(
            f"the dense CRF on {shape[0]}x{shape[1]} px with {n_classes} classes needs about "
            f"{_fmt_bytes(need)} and {_fmt_bytes(have)} is available: turn the CRF off for this "
            "image, or segment a crop")


def crf_refine(
    image: np.ndarray, proba: np.ndarray, params: CRFParams | None = None
) -> np.ndarray:
    """Refined class probabilities ``(H, W, C)`` float32 of ``proba`` ``(H, W, C)`` on ``image``.

    ``image`` is the picture the probabilities belong to (grey or colour, any dtype); the result
    sums to one over classes. With one class there is nothing to refine and ``proba`` returns.
    """
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError(
            "the dense CRF needs pydensecrf2 (pip install pydensecrf2)"
        ) from exc
    params = params or CRFParams()
    p = np.asarray(proba, np.float32)
    if p.ndim != 3:
        raise ValueError(f"probabilities must be (H, W, C), got shape {p.shape}")
    h, w, c = p.shape
    guide = crf_guide(image)
    if guide.shape[:2] != (h, w):
        raise ImageError(
            f"the image is {guide.shape[0]}x{guide.shape[1]} but the probabilities are {h}x{w}"
        )
    if c < 2:
        return p
    unary = -np.log(np.clip(p, params.min_prob, 1.0))
    unary = np.ascontiguousarray(unary.reshape(h * w, c).T, dtype=np.float32)
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(unary)
    if params.gaussian_compat > 0:
        crf.addPairwiseGaussian(
            sxy=float(params.gaussian_sxy), compat=float(params.gaussian_compat)
        )
    if params.bilateral_compat > 0:
        crf.addPairwiseBilateral(
            sxy=float(params.bilateral_sxy), srgb=float(params.bilateral_srgb), rgbim=guide,
            compat=float(params.bilateral_compat),
        )
    q = np.asarray(crf.inference(int(params.iterations)), np.float32)  # (C, H*W)
    return np.ascontiguousarray(q.T.reshape(h, w, c))
