"""HR-Dv2 high-resolution features and stride reduction, without full maps unless asked for.

HR-Dv2 (tldr-group/HR-Dv2): run the ViT on transformed copies of the image (the identity plus
periodic shifts by less than half a patch, optionally flips and rotations), resize each low-res
patch map straight to full resolution (``nearest-exact`` by default), undo the transform, and
average with equal weights. The cost is one ordinary forward per transform, so it grows linearly
with their number; stride reduction (Amir et al.: patch-embedding stride ``s < P``, position
embeddings resized bicubically) multiplies the token count by ``(P / s) ** 2`` and attention makes
that quartic in ``P / s``. Both combine: a stride-reduced grid is just another low-res map.

Everything here is linear in the low-res features, so the average is computed by index
arithmetic rather than by materialising each upsampled, inverse-transformed map: for a built-in
transform (a pixel permutation) every output pixel reads its value from one low-res cell
(``nearest-exact``) or a few with fixed weights (bilinear). With nearest sampling and shifts,
flips or quarter turns the index splits into a row part plus a column part, so the sum over the
copies of a batch runs on a small grid of distinct (row, column) keys and the full map is written
once per batch: HR-Dv2 costs its forward passes plus one pass over the output. Custom
``(forward, inverse)`` pairs that are not pixel permutations go through full maps, a few channels
at a time. From one engine:

* :func:`hr_features`: the full ``(H, W, D)`` map (refused with a clear message when it would not
  fit in memory);
* :func:`hr_linear`: ``W @ HR + b`` computed as the average of ``upsample(inverse(W F_t + b))``,
  holding ``C`` channels instead of ``D`` (a 1792 x 1792 image with C = 4: about 1.5 GB peak for
  the whole process, ViT-S/14 on CPU; see tests/benchmarks/bench_highres.py);
* :func:`hr_sample`: HR features at chosen pixels (scribbles), never building the map.

Sizes: like :mod:`headless.features.forward`, an image whose sides are not multiples of ``P`` is
zero-padded bottom/right after normalisation (each transformed copy is padded the same way), the
upsampled maps cover the padded frame and are cropped back. The HR-Dv2 reference instead
centre-crops the image to a multiple of ``P`` first; ``fit="crop"`` does that, and the pixels
outside the crop copy their nearest cropped pixel so outputs still cover the whole image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from headless.features.forward import DEFAULT_MAX_TOKENS, pad_to_patch, preprocess
from headless.features.transforms import Transform, check_transforms, hr_transforms, source_coords
from headless.images import to_rgb01
from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
Taps = list[tuple[torch.Tensor, torch.Tensor | None]]

UPSAMPLE_MODES = ("nearest-exact", "bilinear")
RESIZE_MODES = ("nearest-exact", "bilinear")
FITS = ("pad", "crop")
GiB = 1024**3
# Bytes of live activations per token and embedding channel during one inference forward
# (residual, norm, qkv, attention output, 4x MLP hidden and its activation, plus allocator slack);
# calibrated against peak RSS in tests/benchmarks/bench_highres.py.
ACTIVATION_BYTES_PER_TOKEN_CHANNEL = 4 * 16
BLOCK_BYTES = 16 * 1024**2  # scratch per gathered block of output pixels
WIDEN_BYTES = 256 * 1024**2  # bilinear: column-interpolated low-res map kept per copy
FUSED_BLOCK_BYTES = 1024**2  # output block summed over a whole batch while in cache


class MemoryLimitError(ValueError):
    """A request whose estimated memory exceeds the limit; the message says how to get around it."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class HRConfig:
    """Options shared by :func:`hr_features`, :func:`hr_linear`, :func:`hr_sample`.

    ``shifts``: 0, 4 (von Neumann) or 8 (Moore) directions; ``dist``: shift distance(s) in pixels
    (below P / 2); ``flips`` / ``rotations``: also average over h/v flips and quarter turns;
    ``transforms``: a custom list instead (identity included by the caller); ``stride``: patch
    embedding stride (``None`` = the patch size); ``upsample``: low-res -> full resolution
    (``nearest-exact`` as in the reference, or ``bilinear``); ``resize``: model-input resolution ->
    original image resolution when ``size`` resized the image; ``fit``: ``pad`` (foundation rule)
    or ``crop`` (reference); ``chunk``: at most this many transformed copies per forward pass,
    fewer when a batch's activations would exceed ``batch_bytes`` (batching large inputs gains
    nothing and costs memory); ``max_bytes``: memory limit (default ``$DINOSEG_MAX_MEMORY`` or
    80 % of the available memory).
    """

    shifts: int = 4
    dist: int | tuple[int, ...] = 1
    flips: bool = False
    rotations: bool = False
    transforms: tuple[Transform, ...] | None = None
    stride: int | None = None
    upsample: str = "nearest-exact"
    resize: str = "bilinear"
    fit: str = "pad"
    chunk: int = 8
    batch_bytes: int = 512 * 1024**2
    size: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_bytes: int | None = None
    autocast: bool = True

    def __post_init__(self) -> None:
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.fit not in FITS:
            raise ValueError(
                f"fit must be 'pad' (zero-pad to the patch) or 'crop', got {self.fit!r}"
            )
        if int(self.chunk) < 1:
            raise ValueError(f"chunk must be at least 1, got {self.chunk}")
        if not isinstance(self.dist, int):
            object.__setattr__(self, "dist", tuple(int(d) for d in self.dist))
        if self.transforms is not None:
            object.__setattr__(self, "transforms", tuple(self.transforms))

    def build_transforms(self) -> list[Transform]:
        if self.transforms is not None:
            return list(self.transforms)
        return hr_transforms(self.shifts, self.dist, self.flips, self.rotations)

    @classmethod
    def from_options(cls, **opts: Any) -> HRConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise TypeError(f"unknown HR option(s) {unknown}; known: {sorted(known)}")
        return cls(**opts)


# --------------------------------------------------------------------------- sampling taps


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


def _blocks(n: int, per_block: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, per_block):
        yield s, min(n, s + per_block)


# --------------------------------------------------------------------------- the engine


def average_over_transforms(
    x: torch.Tensor,
    feature_fn: FeatureFn,
    transforms: Sequence[Transform],
    patch_size: int,
    *,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    pixels: tuple[Any, Any] | None = None,
    out_hw: tuple[int, int] | None = None,
    upsample: str = "nearest-exact",
    resize: str = "bilinear",
    fit: str = "pad",
    chunk: int = 8,
    check: bool = True,
) -> ProgressGen[torch.Tensor]:
    """HR-Dv2's average for any ``feature_fn`` (``(B, 3, Hp, Wp) -> (B, h, w, D)``).

    ``x`` is one normalised image ``(3, H, W)``. Each transformed copy is zero-padded to a
    multiple of ``patch_size`` (``fit="pad"``) or the image is centre-cropped to one first
    (``fit="crop"``); copies are batched ``chunk`` at a time through ``feature_fn``; ``project``
    (e.g. a linear map) is applied to the low-res features. The average of
    ``inverse(upsample(F_t))`` is evaluated at ``out_hw`` (the image size by default, reached from
    the model-input size with ``resize`` interpolation), either everywhere -> ``(Ho, Wo, C)`` or
    at ``pixels = (rows, cols)`` -> ``(N, C)``. Generator: yields Progress, returns the tensor.
    """
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"expected one image (3, H, W), got shape {tuple(x.shape)}")
    p = int(patch_size)
    h_in, w_in = int(x.shape[-2]), int(x.shape[-1])
    top = left = 0
    hc, wc = h_in, w_in
    if fit == "crop":
        hc, wc = h_in - h_in % p, w_in - w_in % p
        if hc == 0 or wc == 0:
            raise ValueError(
                f"fit='crop' needs an image of at least {p}x{p} px (the patch); got {h_in}x{w_in}"
            )
        top, left = int(round((h_in - hc) / 2.0)), int(round((w_in - wc) / 2.0))  # CenterCrop
    elif fit != "pad":
        raise ValueError(f"fit must be 'pad' or 'crop', got {fit!r}")
    xw = x[None, :, top:top + hc, left:left + wc].float()
    transforms = list(transforms)
    if check:
        check_transforms(transforms, p, (hc, wc))
    ho, wo = (h_in, w_in) if out_hw is None else (int(out_hw[0]), int(out_hw[1]))

    # output pixel -> working pixel (inside the crop): separable taps over rows and cols.
    # The gathers below run in numpy: memory-bound index arithmetic needs no thread pool, and
    # torch's would stall on a busy machine (every small op waits for its worker threads).
    row_taps = _np_taps(resize_taps(ho, h_in, resize), -top, hc)
    col_taps = _np_taps(resize_taps(wo, w_in, resize), -left, wc)
    if pixels is None:
        n_out = ho * wo
        q_rows = q_cols = None
    else:
        q_rows = np.asarray(pixels[0]).astype(np.int64, copy=False).reshape(-1)
        q_cols = np.asarray(pixels[1]).astype(np.int64, copy=False).reshape(-1)
        if q_rows.shape != q_cols.shape:
            raise ValueError(f"rows and cols differ in length: {q_rows.size} vs {q_cols.size}")
        if q_rows.size and (
            q_rows.min() < 0 or q_rows.max() >= ho or q_cols.min() < 0 or q_cols.max() >= wo
        ):
            raise ValueError(f"pixel coordinates must lie inside the {ho}x{wo} image")
        n_out = int(q_rows.size)

    def block_coords(s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        if q_rows is None or q_cols is None:
            flat = np.arange(s, e, dtype=np.int64)
            return flat // wo, flat % wo
        return q_rows[s:e], q_cols[s:e]

    # group copies by their transformed size (odd quarter turns swap the sides)
    shapes = [t.output_hw((hc, wc)) for t in transforms]
    order = sorted(range(len(transforms)), key=lambda i: (shapes[i] != (hc, wc), shapes[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < chunk and shapes[batches[-1][0]] == shapes[i]:
            batches[-1].append(i)
        else:
            batches.append([i])

    n_t = len(transforms)
    result: torch.Tensor | None = None
    acc = np.zeros((0, 0), np.float32)
    scratch = np.zeros((0, 0), np.float32)
    done = 0
    yield Progress(0, n_t, f"HR features: {n_t} transform(s), {len(batches)} forward pass(es)")
    for ids in batches:
        batch = torch.cat([transforms[i].forward(xw) for i in ids])
        tp_h, tp_w = int(batch.shape[-2]), int(batch.shape[-1])
        batch = pad_to_patch(batch, p)
        hp, wp = int(batch.shape[-2]), int(batch.shape[-1])
        feats = feature_fn(batch)
        del batch
        if feats.ndim != 4 or feats.shape[0] != len(ids):
            raise ValueError(
                f"feature_fn must return (B, h, w, D) with B = {len(ids)}; got {tuple(feats.shape)}"
            )
        if project is not None:
            feats = project(feats)
        feats = feats.detach().to("cpu", torch.float32).contiguous()
        gh, gw, ch = int(feats.shape[1]), int(feats.shape[2]), int(feats.shape[3])
        if result is None:
            # uninitialised: the first accumulation writes instead of adding (saves a pass)
            result = torch.empty(n_out, ch, dtype=torch.float32)
            acc = result.numpy()  # shares memory
        elif result.shape[1] != ch:
            raise ValueError(f"feature_fn returned {ch} channels after {result.shape[1]}")
        per_block = max(1024, BLOCK_BYTES // (4 * ch))
        if scratch.shape != (per_block, ch):
            scratch = np.empty((per_block, ch), np.float32)  # reused: no page faults per block
        up_rows = _np_taps(resize_taps(hp, gh, upsample))
        up_cols = _np_taps(resize_taps(wp, gw, upsample))
        # bilinear: interpolate along columns once per copy (gh x wp cells) when that is small,
        # so each output pixel then reads 2 cells instead of 4
        widen = len(up_cols) > 1 and gh * wp * ch * 4 <= WIDEN_BYTES
        # nearest everywhere: one low-res cell per output pixel and copy; sum the whole batch
        # block by block so each output block is written once while it sits in cache
        single = all(len(tp) == 1 and tp[0][1] is None
                     for tp in (row_taps, col_taps, up_rows, up_cols))
        fused = [b for b, i in enumerate(ids) if single and transforms[i].permutes_pixels]
        parts = [
            _separable_index(transforms[ids[b]], (hc, wc), (tp_h, tp_w), row_taps, col_taps,
                             up_rows, up_cols, gw)
            for b in fused
        ] if fused and pixels is None else []
        if parts and all(pt is not None for pt in parts) and _accumulate_separable(
            acc, [feats[b].numpy().reshape(-1, ch) for b in fused], parts, (ho, wo),
            fresh=done == 0,
        ):
            done += len(fused)
            yield Progress(done, n_t, f"transform {done}/{n_t}")
        elif fused:
            index = [
                _nearest_index(transforms[ids[b]], (hc, wc), (tp_h, tp_w), row_taps, col_taps,
                               up_rows, up_cols, gw, block_coords, n_out)
                for b in fused
            ]
            _accumulate_nearest(acc, [feats[b].numpy().reshape(-1, ch) for b in fused], index,
                                fresh=done == 0)
            del index
            done += len(fused)
            yield Progress(done, n_t, f"transform {done}/{n_t}")
        for b, i in enumerate(ids):
            t = transforms[i]
            if b in fused:
                continue
            if done == 0:
                acc.fill(0.0)
            if t.permutes_pixels:
                f = feats[b].numpy()
                cols, f_w = up_cols, gw
                if widen:
                    f, cols, f_w = _interpolate_columns(f, up_cols), _np_taps(
                        resize_taps(wp, wp, upsample)), wp
                _accumulate_permutation(
                    acc, f.reshape(-1, ch), f_w, t, (hc, wc), (tp_h, tp_w), row_taps, col_taps,
                    up_rows, cols, block_coords, per_block, scratch,
                )
            else:
                _accumulate_general(
                    acc, feats[b], t, (hc, wc), (tp_h, tp_w), (hp, wp), upsample, row_taps,
                    col_taps, block_coords, per_block,
                )
            done += 1
            yield Progress(done, n_t, f"transform {done}/{n_t} ({t.name})")
        del feats
    assert result is not None
    result /= n_t
    return result.reshape(ho, wo, -1) if pixels is None else result


NpTaps = list[tuple[np.ndarray, np.ndarray | None]]
BlockCoords = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def _np_taps(taps: Taps, offset: int = 0, size: int | None = None) -> NpTaps:
    """Taps as numpy arrays, indices shifted by ``offset`` and clamped to ``[0, size)``."""
    out: NpTaps = []
    for idx, w in taps:
        i = idx.numpy().astype(np.int64) + offset
        if size is not None:
            i = np.clip(i, 0, size - 1)
        out.append((i, None if w is None else w.numpy().astype(np.float32)))
    return out


def _mul(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a * b


def _pick(table: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if table is None else table[idx]


def _interpolate_columns(f: np.ndarray, taps: NpTaps) -> np.ndarray:
    """``(h, w, C)`` -> ``(h, W, C)`` along the columns with the given taps."""
    out: np.ndarray | None = None
    for idx, w in taps:
        part = np.take(f, idx, axis=1)
        if w is not None:
            part *= w[None, :, None]
        out = part if out is None else np.add(out, part, out=out)
    assert out is not None
    return out


def _nearest_index(
    t: Transform, work_hw: tuple[int, int], t_hw: tuple[int, int], row_taps: NpTaps,
    col_taps: NpTaps, up_rows: NpTaps, up_cols: NpTaps, gw: int, block_coords: BlockCoords,
    n_out: int,
) -> np.ndarray:
    """Low-res cell read by each output pixel for single-tap (nearest) sampling, as int32."""
    src_r, src_c = source_coords(t, work_hw, t_hw)
    src_r = src_r.reshape(-1).numpy()
    src_c = src_c.reshape(-1).numpy()
    ri, ci, ui, vi = row_taps[0][0], col_taps[0][0], up_rows[0][0], up_cols[0][0]
    out = np.empty(n_out, np.int32)
    for s, e in _blocks(n_out, 1 << 20):
        qr, qc = block_coords(s, e)
        flat_w = ri[qr] * work_hw[1] + ci[qc]
        out[s:e] = ui[src_r[flat_w]] * gw + vi[src_c[flat_w]]
    return out


def _separable_index(
    t: Transform, work_hw: tuple[int, int], t_hw: tuple[int, int], row_taps: NpTaps,
    col_taps: NpTaps, up_rows: NpTaps, up_cols: NpTaps, gw: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Single-tap low-res index of output pixel (y, x) as ``A[y] + B[x]``, if it splits so.

    True for shifts, flips, quarter turns and their compositions (each source coordinate
    depends on the output row alone or on the column alone); ``None`` otherwise.
    """
    src_r, src_c = source_coords(t, work_hw, t_hw)
    a = np.zeros(work_hw[0], np.int64)
    b = np.zeros(work_hw[1], np.int64)
    for src, table, mult in ((src_r.numpy(), up_rows[0][0], gw), (src_c.numpy(), up_cols[0][0], 1)):
        if (src == src[:, :1]).all():
            a += table[src[:, 0]] * mult
        elif (src == src[:1, :]).all():
            b += table[src[0, :]] * mult
        else:
            return None
    return a[row_taps[0][0]], b[col_taps[0][0]]


def _accumulate_separable(
    acc: np.ndarray, feats: list[np.ndarray], parts: list[Any], out_hw: tuple[int, int],
    fresh: bool = False,
) -> bool:
    """acc (+)= sum_t feats[t][A_t[y] + B_t[x]], computed once per distinct row and column key.

    Rows whose indices agree for every copy give equal output rows (likewise columns); with
    shifts of a few pixels there are only ~3 distinct keys per patch row, so the sum over copies
    runs on a small compressed grid and the full map is written in one pass per batch. Returns
    False (nothing done) when the keys barely compress.
    """
    ho, wo = out_hw
    ch = acc.shape[1]
    keys_r, inv_r = np.unique(np.stack([p[0] for p in parts], axis=1), axis=0,
                              return_inverse=True)
    keys_c, inv_c = np.unique(np.stack([p[1] for p in parts], axis=1), axis=0,
                              return_inverse=True)
    n_r, n_c = len(keys_r), len(keys_c)
    if n_r * n_c * 4 > ho * wo or n_r * n_c * ch * 4 > WIDEN_BYTES:
        return False
    comp = np.zeros((n_r, n_c, ch), np.float32)
    for k, f in enumerate(feats):
        comp += np.take(f, keys_r[:, k][:, None] + keys_c[:, k][None, :], axis=0)
    inv_r = inv_r.reshape(-1)
    inv_c = inv_c.reshape(-1)
    out3 = acc.reshape(ho, wo, ch)
    rows = max(1, FUSED_BLOCK_BYTES * 8 // (4 * ch * max(wo, n_c)))
    buf = np.empty((rows, wo, ch), np.float32)
    for y0, y1 in _blocks(ho, rows):
        band = np.take(comp, inv_r[y0:y1], axis=0)
        if fresh:
            np.take(band, inv_c, axis=1, out=out3[y0:y1], mode="clip")
        else:
            out3[y0:y1] += np.take(band, inv_c, axis=1, out=buf[: y1 - y0], mode="clip")
    return True


def _accumulate_nearest(
    acc: np.ndarray, feats: list[np.ndarray], index: list[np.ndarray], fresh: bool = False
) -> None:
    """acc (+)= sum_t feats[t][index[t]], in cache-sized blocks of output pixels.

    ``fresh``: ``acc`` holds garbage and the first term is written, not added.
    """
    ch = acc.shape[1]
    per_block = max(256, FUSED_BLOCK_BYTES // (4 * ch))
    buf = np.empty((per_block, ch), np.float32)
    for s, e in _blocks(acc.shape[0], per_block):
        out = acc[s:e]
        tmp = buf[: e - s]
        for k, (f, idx) in enumerate(zip(feats, index)):
            if fresh and k == 0:
                np.take(f, idx[s:e], axis=0, out=out, mode="clip")
                continue
            np.take(f, idx[s:e], axis=0, out=tmp, mode="clip")
            out += tmp


def _accumulate_permutation(
    acc: np.ndarray, f_flat: np.ndarray, gw: int, t: Transform, work_hw: tuple[int, int],
    t_hw: tuple[int, int], row_taps: NpTaps, col_taps: NpTaps, up_rows: NpTaps, up_cols: NpTaps,
    block_coords: BlockCoords, per_block: int, scratch: np.ndarray,
) -> None:
    """acc += inverse(upsample(F)) sampled at the output pixels, by gathering low-res cells."""
    src_r, src_c = source_coords(t, work_hw, t_hw)  # working pixel -> transformed-frame pixel
    src_r = src_r.reshape(-1).numpy()
    src_c = src_c.reshape(-1).numpy()
    wc = work_hw[1]
    for s, e in _blocks(acc.shape[0], per_block):
        qr, qc = block_coords(s, e)
        out = acc[s:e]
        for ri, rw in row_taps:
            wr = ri[qr] * wc
            w_r = _pick(rw, qr)
            for ci, cw in col_taps:
                flat_w = wr + ci[qc]
                w_rc = _mul(w_r, _pick(cw, qc))
                ty = src_r[flat_w]
                tx = src_c[flat_w]
                for ui, uw in up_rows:
                    w_u = _mul(w_rc, _pick(uw, ty))
                    base = ui[ty] * gw
                    for vi, vw in up_cols:
                        weight = _mul(w_u, _pick(vw, tx))
                        # mode="clip": indices are in range, and "raise" would buffer a copy
                        vals = np.take(f_flat, base + vi[tx], axis=0, out=scratch[: e - s],
                                       mode="clip")
                        if weight is not None:
                            vals *= weight[:, None]
                        out += vals


def _accumulate_general(
    acc: np.ndarray, feat: torch.Tensor, t: Transform, work_hw: tuple[int, int],
    t_hw: tuple[int, int], pad_hw: tuple[int, int], upsample: str, row_taps: NpTaps,
    col_taps: NpTaps, block_coords: BlockCoords, per_block: int,
) -> None:
    """Any (forward, inverse) pair: upsample and invert full maps, a few channels at a time."""
    hc, wc = work_hw
    ch = feat.shape[-1]
    per_channels = max(1, BLOCK_BYTES // (4 * hc * wc))
    for c0 in range(0, ch, per_channels):
        c1 = min(ch, c0 + per_channels)
        low = feat[..., c0:c1].permute(2, 0, 1)[None]
        up = F.interpolate(low, size=pad_hw, mode=upsample)[..., : t_hw[0], : t_hw[1]]
        m = t.inverse(up)
        if tuple(m.shape[-2:]) != (hc, wc):
            raise ValueError(f"{t.name}: inverse returned {tuple(m.shape[-2:])}, not {(hc, wc)}")
        m_rows = m[0].reshape(c1 - c0, hc * wc).T.contiguous().numpy()  # (pixels, channels)
        for s, e in _blocks(acc.shape[0], per_block):
            qr, qc = block_coords(s, e)
            out = acc[s:e, c0:c1]
            for ri, rw in row_taps:
                wr = ri[qr] * wc
                for ci, cw in col_taps:
                    weight = _mul(_pick(rw, qr), _pick(cw, qc))
                    vals = np.take(m_rows, wr + ci[qc], axis=0)
                    if weight is None:
                        out += vals
                    else:
                        vals *= weight[:, None]
                        out += vals


# --------------------------------------------------------------------------- stride reduction


def stride_grid(hw: tuple[int, int], patch_size: int, stride: int | None) -> tuple[int, int]:
    """Token grid of a (padded) ``hw`` input: ``1 + (H - P) // s`` by ``1 + (W - P) // s``."""
    s = int(stride or patch_size)
    return 1 + (int(hw[0]) - patch_size) // s, 1 + (int(hw[1]) - patch_size) // s


def check_stride(stride: int | None, patch_size: int) -> int | None:
    """``None`` or a whole stride in ``[1, P]``; anything else is a clear error."""
    if stride is None:
        return None
    s = int(stride)
    if s != stride or not 1 <= s <= patch_size:
        raise ValueError(
            f"stride must be a whole number of pixels from 1 to the patch size {patch_size} "
            f"(e.g. {patch_size // 2} for P/2, {patch_size // 4} for P/4); got {stride!r}"
        )
    return s


@contextmanager
def patch_stride(model: Any, stride: int | None) -> Iterator[None]:
    """Temporarily give a timm ViT's patch embedding stride ``stride`` (kernel stays ``P``).

    timm's ``_pos_embed`` reads the token grid from the conv output, so with
    ``dynamic_img_size=True`` the patch position embeddings are resized (bicubic) to the
    ``1 + (H - P) // s`` grid. ``dynamic_feat_size`` (which assumes stride == patch) is overridden
    meanwhile. The original stride is restored on exit, also after an exception. Not thread-safe:
    do not run the same model elsewhere while it is stride-reduced.
    """
    pe = model.patch_embed
    proj = pe.proj
    kernel = tuple(proj.kernel_size)
    if stride is None or (int(stride), int(stride)) == tuple(proj.stride):
        yield
        return
    s = check_stride(stride, kernel[0])
    if not getattr(model, "dynamic_img_size", False):
        raise ValueError(
            "stride reduction needs a ViT built with dynamic_img_size=True (position embeddings "
            "are resized to the new token grid)"
        )
    original = tuple(proj.stride)
    saved = pe.__dict__.get("dynamic_feat_size")

    def feat_size(img_size: tuple[int, int]) -> tuple[int, int]:
        return 1 + (img_size[0] - kernel[0]) // s, 1 + (img_size[1] - kernel[1]) // s

    proj.stride = (s, s)
    pe.dynamic_feat_size = feat_size
    try:
        yield
    finally:
        proj.stride = original
        if saved is None:
            pe.__dict__.pop("dynamic_feat_size", None)
        else:
            pe.dynamic_feat_size = saved


def patch_tokens(
    backbone: Backbone, batch: torch.Tensor, stride: int | None = None, autocast: bool = True
) -> torch.Tensor:
    """Final-norm patch tokens ``(B, h, w, D)`` (CLS/registers dropped), CPU float32.

    A lean ``forward_features`` (no q/k/v capture, unlike :func:`headless.features.extract`, so
    large inputs cost no more than the forward itself); the batch is zero-padded to the patch as
    in the foundation rule. With ``stride`` the grid is ``1 + (H - P) // s`` per side.
    """
    model = backbone.model
    p = backbone.patch_size
    s = check_stride(stride, p)
    x = pad_to_patch(batch, p).to(backbone.device)
    gh, gw = stride_grid(x.shape[-2:], p, s)
    use_amp = autocast and x.device.type == "cuda"
    with torch.inference_mode(), patch_stride(model, s), torch.autocast(
        device_type=x.device.type, dtype=torch.bfloat16, enabled=use_amp
    ):
        tokens = model.forward_features(x)
    prefix = model.num_prefix_tokens
    patch = tokens[:, prefix:].float()
    if patch.shape[1] != gh * gw:
        raise RuntimeError(f"model returned {patch.shape[1]} patch tokens, expected {gh}x{gw}")
    return patch.reshape(x.shape[0], gh, gw, -1).cpu()


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a request needs, by part (all float32)."""

    output: int
    forward: int
    features: int
    inputs: int
    scratch: int

    @property
    def total(self) -> int:
        return self.output + self.forward + self.features + self.inputs + self.scratch

    def describe(self) -> str:
        parts = [("output", self.output), ("forward pass", self.forward),
                 ("low-res features", self.features), ("input copies", self.inputs),
                 ("index maps and scratch", self.scratch)]
        inner = ", ".join(f"{name} {_fmt_bytes(v)}" for name, v in parts if v)
        return f"about {_fmt_bytes(self.total)} ({inner})"


def _fmt_bytes(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


def available_memory() -> int:
    """Memory the OS can give us now (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * GiB


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"2.5GiB"`` or plain bytes -> bytes."""
    t = text.strip().upper().replace("IB", "").replace("B", "")
    mult = {"K": 1024, "M": 1024**2, "G": GiB, "T": 1024**4}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "KMGT" and t[-1:] else t
    return int(float(num) * mult)


def memory_limit(max_bytes: int | None = None) -> int:
    """``max_bytes``, else ``$DINOSEG_MAX_MEMORY``, else 80 % of the available memory."""
    if max_bytes is not None:
        return int(max_bytes)
    env = os.environ.get("DINOSEG_MAX_MEMORY")
    if env:
        return parse_bytes(env)
    return int(0.8 * available_memory())


def estimate_memory(
    *, out_values: int, chunk: int, tokens: int, embed_dim: int, feat_channels: int,
    input_pixels: int, work_pixels: int, heads: int = 0, fused_attention: bool = True,
) -> MemoryEstimate:
    """Peak bytes of one HR request (the model's weights are not counted: they are loaded).

    ``out_values``: floats in the result (H * W * C, or N * D); ``tokens``: per copy;
    ``input_pixels``: padded pixels per copy; ``work_pixels``: pixels of the working image.
    """
    forward = chunk * tokens * embed_dim * ACTIVATION_BYTES_PER_TOKEN_CHANNEL
    if not fused_attention:
        forward += chunk * heads * tokens * tokens * 4 * 2
    return MemoryEstimate(
        output=out_values * 4,
        forward=forward,
        features=2 * chunk * tokens * max(feat_channels, embed_dim) * 4,
        inputs=2 * chunk * 3 * input_pixels * 4,
        scratch=work_pixels * 2 * 8 + out_values // max(feat_channels, 1) * 4 * chunk
        + 3 * BLOCK_BYTES
        + min(WIDEN_BYTES, int(2 * math.sqrt(tokens * input_pixels)) * feat_channels * 4),
    )


def plan_chunk(
    estimate_for: Callable[[int], MemoryEstimate], chunk: int, limit: int, what: str,
    suggest_linear: bool = True,
) -> tuple[int, MemoryEstimate]:
    """Largest chunk <= ``chunk`` whose estimate fits ``limit``; else :class:`MemoryLimitError`."""
    c = max(1, int(chunk))
    est = estimate_for(c)
    while est.total > limit and c > 1:
        c = max(1, c // 2)
        est = estimate_for(c)
    if est.total > limit:
        hint = (
            "Use the linear-map path (headless.features.hr_linear: a probe's C output channels "
            "instead of all D feature channels, as the segmenter does) or hr_sample (features "
            "at chosen pixels only); or lower the size"
            if suggest_linear else "Lower the size"
        )
        raise MemoryLimitError(
            f"{what} would need {est.describe()}, more than the {_fmt_bytes(limit)} allowed "
            f"(80 % of available memory, or $DINOSEG_MAX_MEMORY). {hint} (with stride "
            "reduction: a larger stride)."
        )
    return c, est


# --------------------------------------------------------------------------- backbone front end


def _fused(model: Any) -> bool:
    attn = getattr(model.blocks[-1], "attn", None)
    return bool(getattr(attn, "fused_attn", True))


def prepare_image(
    backbone: Backbone, image: Any, cfg: HRConfig
) -> tuple[torch.Tensor, tuple[int, int], list[str]]:
    """Normalised ``(3, H, W)`` model input, the original ``(H, W)`` and notes on resizing.

    A numpy image goes through :func:`headless.features.preprocess` (``size``, token limit); a
    torch tensor is taken as already normalised ``(3, H, W)``.
    """
    if isinstance(image, torch.Tensor):
        x = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(
                f"a tensor input must be a normalised (3, H, W) image, got {tuple(image.shape)}"
            )
        return x.float(), (int(x.shape[-2]), int(x.shape[-1])), []
    rgb = to_rgb01(np.asarray(image))
    x, notes = preprocess(rgb, backbone.spec, cfg.size, cfg.max_tokens)
    return x, (int(rgb.shape[0]), int(rgb.shape[1])), notes


def run_hr(
    backbone: Backbone, image: Any, cfg: HRConfig, *, project: Callable | None = None,
    out_channels: int | None = None, pixels: tuple[Any, Any] | None = None,
    what: str = "HR features", extra_values: int = 0,
) -> ProgressGen[torch.Tensor]:
    """Shared driver: prepare, check memory, run :func:`average_over_transforms` on the backbone.

    ``extra_values`` adds floats held alongside the result (e.g. classical channels of a hybrid).
    """
    x, orig_hw, notes = prepare_image(backbone, image, cfg)
    p = backbone.patch_size
    stride = check_stride(cfg.stride, p)
    transforms = cfg.build_transforms()
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if cfg.fit == "crop":
        h, w = max(h - h % p, p), max(w - w % p, p)
    ph, pw = math.ceil(h / p) * p, math.ceil(w / p) * p
    gh, gw = stride_grid((ph, pw), p, stride)
    model = backbone.model
    tokens = gh * gw + int(getattr(model, "num_prefix_tokens", 1))
    d = backbone.spec.embed_dim
    c = int(out_channels if out_channels is not None else d)
    n_out = (len(np.asarray(pixels[0]).reshape(-1)) if pixels is not None
             else orig_hw[0] * orig_hw[1])

    def estimate_for(ch: int) -> MemoryEstimate:
        return estimate_memory(
            out_values=n_out * c + extra_values, chunk=min(ch, len(transforms)), tokens=tokens,
            embed_dim=d, feat_channels=c, input_pixels=ph * pw, work_pixels=h * w,
            heads=backbone.spec.num_heads, fused_attention=_fused(model),
        )

    size_txt = f"{orig_hw[0]}x{orig_hw[1]}" + (f" (model input {x.shape[-2]}x{x.shape[-1]})"
                                               if (x.shape[-2], x.shape[-1]) != orig_hw else "")
    per_copy = tokens * d * ACTIVATION_BYTES_PER_TOKEN_CHANNEL
    chunk, _ = plan_chunk(
        estimate_for, min(cfg.chunk, max(1, cfg.batch_bytes // per_copy)),
        memory_limit(cfg.max_bytes),
        f"{what} of a {size_txt} image with {c} channels, {len(transforms)} transform(s)"
        + (f", stride {stride}" if stride else ""),
        suggest_linear=project is None and pixels is None,
    )
    for note in notes:
        yield Progress(0, len(transforms), note)

    def feature_fn(batch: torch.Tensor) -> torch.Tensor:
        return patch_tokens(backbone, batch, stride=stride, autocast=cfg.autocast)

    result = yield from average_over_transforms(
        x, feature_fn, transforms, p, project=project, pixels=pixels, out_hw=orig_hw,
        upsample=cfg.upsample, resize=cfg.resize, fit=cfg.fit, chunk=chunk,
    )
    return result


def hr_features(backbone: Backbone, image: Any, **opts: Any) -> ProgressGen[np.ndarray]:
    """HR-Dv2 features ``(H, W, D)`` float32 at the image's own resolution (progress generator).

    Options: see :class:`HRConfig`. Refuses (:class:`MemoryLimitError`) when the estimated memory
    exceeds the limit, pointing to :func:`hr_linear` / :func:`hr_sample`.
    """
    cfg = HRConfig.from_options(**opts)
    out = yield from run_hr(backbone, image, cfg)
    return out.numpy()


def hr_linear(
    backbone: Backbone, image: Any, weight: Any, bias: Any = None, **opts: Any
) -> ProgressGen[np.ndarray]:
    """``W @ HR(x) + b`` as ``(H, W, C)``, holding C channels at full resolution, never D.

    Computed as the average over transforms of ``upsample(inverse(W F_t + b))``: upsampling and
    the pixel permutations are linear with weights summing to one, so this equals the linear map
    applied to :func:`hr_features` (to float rounding). ``weight`` is ``(C, D)``, ``bias`` ``(C,)``.
    """
    cfg = HRConfig.from_options(**opts)
    w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    d = backbone.spec.embed_dim
    if w.ndim != 2 or w.shape[1] != d:
        raise ValueError(
            f"weight must be (C, D) with D = {d} ({backbone.name}); got {tuple(w.shape)}"
        )
    b = (torch.zeros(w.shape[0]) if bias is None
         else torch.as_tensor(np.asarray(bias), dtype=torch.float32).reshape(-1))
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"bias has {b.shape[0]} entries, weight has {w.shape[0]} rows")

    def project(f: torch.Tensor) -> torch.Tensor:
        return f.to(torch.float32) @ w.T + b

    out = yield from run_hr(backbone, image, cfg, project=project, out_channels=w.shape[0],
                            what="HR linear map")
    return out.numpy()


def hr_sample_gen(
    backbone: Backbone, image: Any, rows: Any, cols: Any, **opts: Any
) -> ProgressGen[np.ndarray]:
    """Progress-generator form of :func:`hr_sample`."""
    cfg = HRConfig.from_options(**opts)
    out = yield from run_hr(backbone, image, cfg, pixels=(rows, cols), what="HR samples")
    return out.numpy()


def hr_sample(backbone: Backbone, image: Any, rows: Any, cols: Any, **opts: Any) -> np.ndarray:
    """HR features ``(N, D)`` at pixels ``(rows[i], cols[i])`` of the original image.

    Equal to ``hr_features(...)[rows, cols]`` without building the ``(H, W, D)`` map: each pixel
    reads its few low-res cells per transform. For training probes from scribbles.
    """
    from headless.progress import run

    return run(hr_sample_gen(backbone, image, rows, cols, **opts))
