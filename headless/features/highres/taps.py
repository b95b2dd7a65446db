"""Sampling taps: ``F.interpolate`` written as 1-D ``(index, weight)`` lists, torch and numpy.

Upsampling and resizing are separable and linear, so the engine reads each output pixel's few
low-res cells through these taps instead of materialising the interpolated maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

Taps = list[tuple[torch.Tensor, torch.Tensor | None]]
NpTaps = list[tuple[np.ndarray, np.ndarray | None]]
BlockCoords = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def resize_taps(n_out: int, n_in: int, mode: str) -> Taps:
    """1-D taps of ``F.interpolate`` from ``n_in`` to ``n_out`` samples (align_corners=False).

    A list of ``(index, weight)``; weight ``None`` means 1. Nearest indices come from torch itself
    so ties round exactly as ``F.interpolate`` does; bilinear follows torch's formula (source
    ``(i + 0.5) * n_in / n_out - 0.5`` clamped at 0, right neighbour clamped at the edge).
    """
    n_out, n_in = int(n_out), int(n_in)
    if n_out == n_in:
        return [(torch.arange(n_out), None)]
    if mode in ("nearest-exact", "nearest"):
        src = torch.arange(n_in, dtype=torch.float64).view(1, 1, n_in)
        idx = F.interpolate(src, size=n_out, mode=mode).view(-1).round().long()
        return [(idx, None)]
    if mode == "bilinear":
        pos = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
        i0 = pos.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        lam = (pos - i0).to(torch.float32)
        return [(i0, 1.0 - lam), (i1, lam)]
    raise ValueError(f"unknown interpolation mode {mode!r}")


def blocks(n: int, per_block: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive blocks of ``per_block`` items covering ``range(n)``."""
    for s in range(0, n, per_block):
        yield s, min(n, s + per_block)


def np_taps(taps: Taps, offset: int = 0, size: int | None = None) -> NpTaps:
    """Taps as numpy arrays, indices shifted by ``offset`` and clamped to ``[0, size)``."""
    out: NpTaps = []
    for idx, w in taps:
        i = idx.numpy().astype(np.int64) + offset
        if size is not None:
            i = np.clip(i, 0, size - 1)
        out.append((i, None if w is None else w.numpy().astype(np.float32)))
    return out


def interpolate_columns(f: np.ndarray, taps: NpTaps) -> np.ndarray:
    """``(h, w, C)`` -> ``(h, W, C)`` along the columns with the given taps."""
    out: np.ndarray | None = None
    for idx, w in taps:
        part = np.take(f, idx, axis=1)
        if w is not None:
            part *= w[None, :, None]
        out = part if out is None else np.add(out, part, out=out)
    assert out is not None
    return out

