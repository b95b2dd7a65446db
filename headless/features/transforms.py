"""Invertible image transforms for HR-Dv2, as (forward, inverse) pairs on ``(B, C, H, W)`` tensors.

HR-Dv2 averages the features of transformed copies of an image after undoing each transform on
the upsampled feature map, so every transform must come with an exact inverse. The built-in ones
(periodic shifts, flips, 90-degree rotations and their compositions) only re-arrange pixels; they
say so with ``permutes_pixels=True``, which lets :mod:`headless.features.highres` undo them by index
arithmetic instead of materialising full-resolution maps. A user transform given as any
``(forward, inverse)`` pair works too (through the slower general path).

Shift directions follow the HR-Dv2 reference (tldr-group/HR-Dv2, ``compute_shift_directions``):
the 3 x 3 neighbourhood in raster order, ``(dy, dx)``; von Neumann keeps the 4 edge neighbours,
Moore all 8. A shift by ``d`` in direction ``(dy, dx)`` is ``torch.roll(x, (d*dy, d*dx))`` with
periodic boundaries; its inverse rolls back. The identity always comes first.

Flips combine with shifts as ``flip(shift(x))`` and are undone in the opposite order,
``unshift(unflip(y))``: the reference notebook composed the inverses in the forward order, which
does not give the identity; :func:`check_transforms` tests exactly that on a random tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

TensorFn = Callable[[torch.Tensor], torch.Tensor]

# (dy, dx) in raster order over the 3 x 3 neighbourhood, centre excluded.
MOORE: tuple[tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1),
)
VON_NEUMANN: tuple[tuple[int, int], ...] = ((-1, 0), (0, -1), (0, 1), (1, 0))


class TransformError(ValueError):
    """A transform that cannot be used: shift too large, or inverse that does not invert."""


@dataclass(frozen=True)
class Transform:
    """An invertible image transform.

    ``forward`` and ``inverse`` act on the last two axes of a ``(B, C, H, W)`` tensor.
    ``permutes_pixels`` promises that ``forward`` only moves pixels (no interpolation), so the
    inverse is an index map. ``shift`` is the net periodic translation ``(dy, dx)`` in pixels,
    used to enforce HR-Dv2's rule that shifts stay below half a patch.
    """

    name: str
    forward: TensorFn
    inverse: TensorFn
    permutes_pixels: bool = False
    shift: tuple[int, int] = (0, 0)

    @property
    def max_shift(self) -> int:
        return max(abs(self.shift[0]), abs(self.shift[1]))

    def output_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Spatial size of ``forward`` applied to an ``hw`` image (rotations swap the sides)."""
        # a byte-sized probe for pixel permutations; float for anything that may interpolate
        dtype = torch.uint8 if self.permutes_pixels else torch.float32
        probe = self.forward(torch.zeros(1, 1, int(hw[0]), int(hw[1]), dtype=dtype))
        return int(probe.shape[-2]), int(probe.shape[-1])

    def then(self, other: Transform) -> Transform:
        """``other`` applied after ``self`` (see :func:`compose`)."""
        return compose(self, other)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def identity() -> Transform:
    """The identity: HR-Dv2 always includes the untransformed image."""
    return Transform("identity", _identity, _identity, permutes_pixels=True)


def roll(dy: int, dx: int) -> Transform:
    """Periodic shift by ``(dy, dx)`` pixels (``torch.roll`` on the last two axes)."""
    dy, dx = int(dy), int(dx)
    if dy == 0 and dx == 0:
        return identity()

    def fwd(x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, (dy, dx), dims=(-2, -1))

    def inv(x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, (-dy, -dx), dims=(-2, -1))

    return Transform(f"roll({dy},{dx})", fwd, inv, permutes_pixels=True, shift=(dy, dx))


def flip(axis: str) -> Transform:
    """Mirror: ``"h"`` flips left-right (the width axis), ``"v"`` top-bottom, ``"hv"`` both."""
    dims = {"h": (-1,), "v": (-2,), "hv": (-2, -1), "vh": (-2, -1)}.get(axis)
    if dims is None:
        raise TransformError(f"flip axis must be 'h', 'v' or 'hv', got {axis!r}")

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, dims)

    return Transform(f"flip_{axis}", f, f, permutes_pixels=True)


def rot90(k: int) -> Transform:
    """Rotation by ``k`` quarter turns (counter-clockwise); swaps height and width for odd ``k``."""
    k = int(k) % 4
    if k == 0:
        return identity()

    def fwd(x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, k, dims=(-2, -1))

    def inv(x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, -k, dims=(-2, -1))

    return Transform(f"rot{90 * k}", fwd, inv, permutes_pixels=True)


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` left to right; the inverse undoes them right to left.

    The net ``shift`` is the sum of the parts' shifts (exact for the built-in compositions, which
    hold at most one roll).
    """
    parts = [t for t in transforms if t.name != "identity"]
    if not parts:
        return identity()
    if len(parts) == 1:
        return parts[0]

    def fwd(x: torch.Tensor) -> torch.Tensor:
        for t in parts:
            x = t.forward(x)
        return x

    def inv(x: torch.Tensor) -> torch.Tensor:
        for t in reversed(parts):
            x = t.inverse(x)
        return x

    shift = (sum(t.shift[0] for t in parts), sum(t.shift[1] for t in parts))
    return Transform(
        "+".join(t.name for t in parts), fwd, inv,
        permutes_pixels=all(t.permutes_pixels for t in parts), shift=shift,
    )


def shift_directions(n: int) -> tuple[tuple[int, int], ...]:
    """Unit shift directions: 4 (von Neumann), 8 (Moore) or 0 (none)."""
    if n == 4:
        return VON_NEUMANN
    if n == 8:
        return MOORE
    if n == 0:
        return ()
    raise TransformError(f"shifts must be 0, 4 (von Neumann) or 8 (Moore), got {n}")


def _dists(dist: int | Sequence[int]) -> list[int]:
    ds = [int(dist)] if isinstance(dist, (int, float)) else [int(d) for d in dist]
    if not ds or any(d < 1 for d in ds):
        raise TransformError(f"shift distances must be positive whole pixels, got {dist!r}")
    return ds


def shift_transforms(shifts: int = 4, dist: int | Sequence[int] = 1) -> list[Transform]:
    """Identity, then rolls by ``d * (dy, dx)`` for each distance ``d`` and direction, in order.

    ``shift_transforms(8, (1, 2))`` is the reference's 17-transform setting.
    """
    out = [identity()]
    dirs = shift_directions(shifts)
    if dirs:
        for d in _dists(dist):
            out += [roll(d * dy, d * dx) for dy, dx in dirs]
    return out


def hr_transforms(
    shifts: int = 4, dist: int | Sequence[int] = 1, flips: bool = False, rotations: bool = False
) -> list[Transform]:
    """The HR-Dv2 transform set: shifts, optionally times {none, h-flip, v-flip} and rotations.

    Each shift is combined with each flip (``flip(shift(x))``) and each quarter turn, so
    ``shifts=4, flips=True`` gives 5 x 3 = 15 transforms. The reference's flip list repeats the
    identity (``[id, h, id, v]``); here every transform appears once.
    """
    out = shift_transforms(shifts, dist)
    if flips:
        out = [compose(s, f) for f in (identity(), flip("h"), flip("v")) for s in out]
    if rotations:
        out = [compose(s, rot90(k)) for k in range(4) for s in out]
    return out


def coordinate_grid(hw: tuple[int, int]) -> torch.Tensor:
    """``(1, 2, H, W)`` int32 tensor holding each pixel's own (row, col)."""
    h, w = int(hw[0]), int(hw[1])
    rows = torch.arange(h, dtype=torch.int32).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.int32).view(1, w).expand(h, w)
    return torch.stack([rows, cols])[None].contiguous()


def source_coords(
    t: Transform, hw: tuple[int, int], out_hw: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel of ``t.inverse(M)`` comes from in the transformed frame.

    For a pixel-permuting ``t`` and an ``hw`` image: ``t.inverse(M)[..., y, x] ==
    M[..., rows[y, x], cols[y, x]]`` for any map ``M`` of size ``t.output_hw(hw)``. Found by
    applying the inverse to a grid of coordinates, so it holds for any composition.
    ``out_hw`` is ``t.output_hw(hw)`` when the caller already knows it.
    """
    if not t.permutes_pixels:
        raise TransformError(f"{t.name} does not declare itself a pixel permutation")
    out_hw = t.output_hw(hw) if out_hw is None else out_hw
    grid = t.inverse(coordinate_grid(out_hw))
    if tuple(grid.shape[-2:]) != (int(hw[0]), int(hw[1])):
        raise TransformError(
            f"{t.name}: inverse maps a {out_hw} map to {tuple(grid.shape[-2:])}, "
            f"not back to {tuple(hw)}"
        )
    return grid[0, 0], grid[0, 1]


def check_transforms(
    transforms: Sequence[Transform], patch_size: int, hw: tuple[int, int], seed: int = 0
) -> None:
    """Raise :class:`TransformError` unless every transform is usable for HR-Dv2 on ``hw`` images.

    Checks: at least one transform; each shift below half a patch (``N < P / 2``, as the method
    requires; a shift of half a patch or more just lands in the neighbouring patch); and
    ``inverse(forward(x)) == x`` on a random tensor of the image's size (exactly for pixel
    permutations, to float tolerance otherwise). Pixel permutations must also really permute.
    """
    if not transforms:
        raise TransformError("no transforms given: HR-Dv2 needs at least the identity")
    gen = torch.Generator().manual_seed(seed)
    h, w = int(hw[0]), int(hw[1])
    x = torch.rand(1, 2, h, w, generator=gen)
    for t in transforms:
        if 2 * t.max_shift >= patch_size:
            raise TransformError(
                f"{t.name}: a shift of {t.max_shift} px is not below half the patch size "
                f"(P / 2 = {patch_size / 2:g} px for P = {patch_size}); use a shift distance of "
                f"at most {(patch_size - 1) // 2} px"
            )
        try:
            y = t.forward(x)
            back = t.inverse(y)
        except Exception as exc:
            raise TransformError(
                f"{t.name} failed on a {h}x{w} image: {type(exc).__name__}: {exc}"
            ) from exc
        if y.ndim != 4 or y.shape[:2] != x.shape[:2]:
            raise TransformError(
                f"{t.name}: forward must keep (B, C) and return (B, C, H, W); got {tuple(y.shape)}"
            )
        ok = back.shape == x.shape and (
            torch.equal(back, x) if t.permutes_pixels else torch.allclose(back, x, atol=1e-5)
        )
        if not ok:
            raise TransformError(
                f"{t.name} is not invertible as given: inverse(forward(x)) != x on a random "
                f"{h}x{w} tensor (check that the inverse undoes the steps in reverse order)"
            )
        if t.permutes_pixels:
            grid = t.forward(coordinate_grid((h, w))).numpy()
            rows, cols = grid[0, 0].astype(np.int64), grid[0, 1].astype(np.int64)
            inside = bool(((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).all())
            hit = np.zeros(h * w, bool)
            if inside and rows.size == h * w:
                hit[(rows * w + cols).reshape(-1)] = True
            if not inside or not hit.all():  # h*w in-range values hitting every pixel
                raise TransformError(
                    f"{t.name} claims to permute pixels but does not; give it "
                    "permutes_pixels=False"
                )
