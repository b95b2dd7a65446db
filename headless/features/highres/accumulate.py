"""The gathers behind the HR-Dv2 average: ``acc += inverse(upsample(F_t))`` by index arithmetic.

One kernel per case, fastest first: separable nearest index summed on a compressed grid, nearest
index per pixel, pixel permutations with interpolation taps, and any ``(forward, inverse)`` pair
through full maps a few channels at a time. They run in numpy (memory-bound, no thread pool).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from headless.features.highres.memory import BLOCK_BYTES, FUSED_BLOCK_BYTES, WIDEN_BYTES
from headless.features.highres.taps import BlockCoords, NpTaps, blocks
from headless.features.transforms import Transform, source_coords


def _mul(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a * b


def _pick(table: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if table is None else table[idx]


def nearest_index(
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
    for s, e in blocks(n_out, 1 << 20):
        qr, qc = block_coords(s, e)
        flat_w = ri[qr] * work_hw[1] + ci[qc]
        out[s:e] = ui[src_r[flat_w]] * gw + vi[src_c[flat_w]]
    return out


def separable_index(
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


def accumulate_separable(
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
    for y0, y1 in blocks(ho, rows):
        band = np.take(comp, inv_r[y0:y1], axis=0)
        if fresh:
            np.take(band, inv_c, axis=1, out=out3[y0:y1], mode="clip")
        else:
            out3[y0:y1] += np.take(band, inv_c, axis=1, out=buf[: y1 - y0], mode="clip")
    return True


def accumulate_nearest(
    acc: np.ndarray, feats: list[np.ndarray], index: list[np.ndarray], fresh: bool = False
) -> None:
    """acc (+)= sum_t feats[t][index[t]], in cache-sized blocks of output pixels.

    ``fresh``: ``acc`` holds garbage and the first term is written, not added.
    """
    ch = acc.shape[1]
    per_block = max(256, FUSED_BLOCK_BYTES // (4 * ch))
    buf = np.empty((per_block, ch), np.float32)
    for s, e in blocks(acc.shape[0], per_block):
        out = acc[s:e]
        tmp = buf[: e - s]
        for k, (f, idx) in enumerate(zip(feats, index)):
            if fresh and k == 0:
                np.take(f, idx[s:e], axis=0, out=out, mode="clip")
                continue
            np.take(f, idx[s:e], axis=0, out=tmp, mode="clip")
            out += tmp


def accumulate_permutation(
    acc: np.ndarray, f_flat: np.ndarray, gw: int, t: Transform, work_hw: tuple[int, int],
    t_hw: tuple[int, int], row_taps: NpTaps, col_taps: NpTaps, up_rows: NpTaps, up_cols: NpTaps,
    block_coords: BlockCoords, per_block: int, scratch: np.ndarray,
) -> None:
    """acc += inverse(upsample(F)) sampled at the output pixels, by gathering low-res cells."""
    src_r, src_c = source_coords(t, work_hw, t_hw)  # working pixel -> transformed-frame pixel
    src_r = src_r.reshape(-1).numpy()
    src_c = src_c.reshape(-1).numpy()
    wc = work_hw[1]
    for s, e in blocks(acc.shape[0], per_block):
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


def accumulate_general(
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
        for s, e in blocks(acc.shape[0], per_block):
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
