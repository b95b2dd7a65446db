"""HR-Dv2's average over transforms, computed by index arithmetic instead of full maps.

HR-Dv2 (tldr-group/HR-Dv2): run the ViT on transformed copies of the image (the identity plus
periodic shifts by less than half a patch, optionally flips and rotations), resize each low-res
patch map straight to full resolution (``nearest-exact`` by default), undo the transform, and
average with equal weights. The cost is one ordinary forward per transform, so it grows linearly
with their number. A stride-reduced grid (:mod:`headless.features.highres.stride`) is just
another low-res map.

Everything is linear in the low-res features, so the average is not built from materialised
upsampled, inverse-transformed maps: for a built-in transform (a pixel permutation) every output
pixel reads its value from one low-res cell (``nearest-exact``) or a few with fixed weights
(bilinear). With nearest sampling and shifts, flips or quarter turns the index splits into a row
part plus a column part, so the sum over the copies of a batch runs on a small grid of distinct
(row, column) keys and the full map is written once per batch: HR-Dv2 costs its forward passes
plus one pass over the output. Custom ``(forward, inverse)`` pairs that are not pixel
permutations go through full maps, a few channels at a time
(:mod:`headless.features.highres.accumulate` holds the kernels).

Sizes: like :mod:`headless.features.forward`, an image whose sides are not multiples of ``P`` is
zero-padded bottom/right after normalisation (each transformed copy is padded the same way), the
upsampled maps cover the padded frame and are cropped back. The HR-Dv2 reference instead
centre-crops the image to a multiple of ``P`` first; ``fit="crop"`` does that, and the pixels
outside the crop copy their nearest cropped pixel so outputs still cover the whole image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from headless.features.forward import pad_to_patch
from headless.features.highres.accumulate import (
    accumulate_general,
    accumulate_nearest,
    accumulate_permutation,
    accumulate_separable,
    nearest_index,
    separable_index,
)
from headless.features.highres.memory import BLOCK_BYTES, WIDEN_BYTES
from headless.features.highres.taps import interpolate_columns, np_taps, resize_taps
from headless.features.transforms import Transform, check_transforms
from headless.progress import Progress, ProgressGen

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


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
    row_taps = np_taps(resize_taps(ho, h_in, resize), -top, hc)
    col_taps = np_taps(resize_taps(wo, w_in, resize), -left, wc)
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
        up_rows = np_taps(resize_taps(hp, gh, upsample))
        up_cols = np_taps(resize_taps(wp, gw, upsample))
        # bilinear: interpolate along columns once per copy (gh x wp cells) when that is small,
        # so each output pixel then reads 2 cells instead of 4
        widen = len(up_cols) > 1 and gh * wp * ch * 4 <= WIDEN_BYTES
        # nearest everywhere: one low-res cell per output pixel and copy; sum the whole batch
        # block by block so each output block is written once while it sits in cache
        single = all(len(tp) == 1 and tp[0][1] is None
                     for tp in (row_taps, col_taps, up_rows, up_cols))
        fused = [b for b, i in enumerate(ids) if single and transforms[i].permutes_pixels]
        parts = [
            separable_index(transforms[ids[b]], (hc, wc), (tp_h, tp_w), row_taps, col_taps,
                            up_rows, up_cols, gw)
            for b in fused
        ] if fused and pixels is None else []
        if parts and all(pt is not None for pt in parts) and accumulate_separable(
            acc, [feats[b].numpy().reshape(-1, ch) for b in fused], parts, (ho, wo),
            fresh=done == 0,
        ):
            done += len(fused)
            yield Progress(done, n_t, f"transform {done}/{n_t}")
        elif fused:
            index = [
                nearest_index(transforms[ids[b]], (hc, wc), (tp_h, tp_w), row_taps, col_taps,
                              up_rows, up_cols, gw, block_coords, n_out)
                for b in fused
            ]
            accumulate_nearest(acc, [feats[b].numpy().reshape(-1, ch) for b in fused], index,
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
                    f, cols, f_w = interpolate_columns(f, up_cols), np_taps(
                        resize_taps(wp, wp, upsample)), wp
                accumulate_permutation(
                    acc, f.reshape(-1, ch), f_w, t, (hc, wc), (tp_h, tp_w), row_taps, col_taps,
                    up_rows, cols, block_coords, per_block, scratch,
                )
            else:
                accumulate_general(
                    acc, feats[b], t, (hc, wc), (tp_h, tp_w), (hp, wp), upsample, row_taps,
                    col_taps, block_coords, per_block,
                )
            done += 1
            yield Progress(done, n_t, f"transform {done}/{n_t} ({t.name})")
        del feats
    assert result is not None
    result /= n_t
    return result.reshape(ho, wo, -1) if pixels is None else result
