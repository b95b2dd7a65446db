"""Crop-window maths shared by the crops: the window, aIoU, and RandomResizedCrop's own sampling.

:func:`random_resized_crop_window` is ``v2.RandomResizedCrop``'s rule with an optional generator;
the crops fall back to it when a sample has no box (or no attention map).

Randomness: by default the global torch RNG, which a ``DataLoader`` seeds differently in each
worker (``torch.manual_seed`` makes a run reproducible). A ``generator`` makes one transform
instance reproducible on its own; do not pass one when using worker processes, since each worker
would get a copy of the same generator state and repeat the same crops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torchvision.transforms.v2 import functional as F


@dataclass(frozen=True)
class CropWindow:
    """A crop in input pixels (integers, as ``F.resized_crop`` takes them).

    ``fallback`` says why a crop did not follow the main rule: ``"no box"``, ``"no map"``,
    ``"shape"`` (no crop shape could cover ``thr`` of the box; the whole image is used) or None.
    """

    top: int
    left: int
    height: int
    width: int
    fallback: str | None = None

    def xyxy(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.left + self.width, self.top + self.height)

    def params(self) -> dict[str, int]:
        return dict(top=self.top, left=self.left, height=self.height, width=self.width)


def aiou(crop_xyxy: Sequence[float], box_xyxy: Sequence[float]) -> float:
    """Asymmetric IoU: area of (crop ∩ box) / area of box (1.0 for an empty box)."""
    cx0, cy0, cx1, cy1 = (float(v) for v in crop_xyxy)
    bx0, by0, bx1, by1 = (float(v) for v in box_xyxy)
    area = max(0.0, bx1 - bx0) * max(0.0, by1 - by0)
    if area <= 0:
        return 1.0
    iw = max(0.0, min(cx1, bx1) - max(cx0, bx0))
    ih = max(0.0, min(cy1, by1) - max(cy0, by0))
    return iw * ih / area


# -- random numbers -------------------------------------------------------------------------------
# The draws mirror v2.RandomResizedCrop's own calls (float32 bounds, ``uniform_``, ``randint``)
# so that, under the same torch seed, the no-box fallback is *identical* to RandomResizedCrop.
def uniform(lo: float, hi: float, gen: torch.Generator | None) -> float:
    """One draw from U(lo, hi), as RandomResizedCrop draws its scale."""
    return float(torch.empty(1).uniform_(lo, hi, generator=gen).item())


@lru_cache(maxsize=256)
def _log_bounds(lo: float, hi: float) -> tuple[float, float]:
    """``log`` of the bounds in float32, as RandomResizedCrop computes them."""
    log_lo, log_hi = torch.log(torch.tensor([float(lo), float(hi)])).tolist()
    return log_lo, log_hi


def log_uniform(lo: float, hi: float, gen: torch.Generator | None) -> float:
    """One log-uniform draw in [lo, hi], as RandomResizedCrop draws its aspect ratio."""
    log_lo, log_hi = _log_bounds(float(lo), float(hi))
    return math.exp(uniform(log_lo, log_hi, gen))


def randint(lo: int, hi_inclusive: int, gen: torch.Generator | None) -> int:
    """One integer in [lo, hi_inclusive], as RandomResizedCrop draws its position."""
    return int(torch.randint(lo, hi_inclusive + 1, (1,), generator=gen).item())


def check_scale_ratio(scale: Sequence[float], ratio: Sequence[float]) -> None:
    """ValueError unless ``scale`` and ``ratio`` are (min, max) ranges of positive numbers."""
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {tuple(scale)}")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {tuple(ratio)}")


def random_resized_crop_window(
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    fallback: str | None = None,
) -> CropWindow:
    """``v2.RandomResizedCrop``'s sampling (same rule and fallback), with an optional generator."""
    area = height * width
    for _ in range(10):
        target = area * uniform(scale[0], scale[1], generator)
        r = log_uniform(ratio[0], ratio[1], generator)
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            top = randint(0, height - h, generator)
            left = randint(0, width - w, generator)
            return CropWindow(top, left, h, w, fallback)
    h, w = central_shape(height, width, ratio)
    return CropWindow((height - h) // 2, (width - w) // 2, h, w, fallback)


def central_shape(height: int, width: int, ratio: Sequence[float]) -> tuple[int, int]:
    """RandomResizedCrop's fallback shape: the largest crop with a ratio in range."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return max(1, min(h, height)), max(1, min(w, width))


# -- shared helpers -------------------------------------------------------------------------------
def as_size(size: int | Sequence[int]) -> list[int]:
    """An output size ``[h, w]`` from an int or a one- or two-element sequence."""
    if isinstance(size, int):
        out = [size, size]
    else:
        out = [int(s) for s in size]
        if len(out) == 1:
            out = out * 2
    if len(out) != 2 or min(out) < 1:
        raise ValueError(f"size must be an int or (h, w) of positive ints, got {size!r}")
    return out


def resized_crop(t: Any, inpt: Any, params: dict[str, Any]) -> Any:
    """Crop ``inpt`` to the window in ``params`` and resize it to ``t.size`` (any v2 input)."""
    return t._call_kernel(
        F.resized_crop,
        inpt,
        top=params["top"],
        left=params["left"],
        height=params["height"],
        width=params["width"],
        size=t.size,
        interpolation=t.interpolation,
        antialias=t.antialias,
    )
