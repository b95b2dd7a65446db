"""The localized crop (seed 000): RandomResizedCrop around a box, covering ``thr`` of it.

:class:`LocalizedRandomResizedCrop` crops around a (pseudo) ground-truth box so that every crop
covers at least ``thr`` of the box area (asymmetric IoU, aIoU = intersection / box area).
:func:`maiou_estimate` is a Monte-Carlo estimate of the mean aIoU a ``thr`` produces;
:func:`maiou_approx` is the seed's closed form ``2 (maIoU - 0.5) = thr ** 0.4``.

Images (``tv_tensors.Image``, PIL, plain tensors), masks and ``tv_tensors.BoundingBoxes`` are
cropped to the same window and resized with the same kernels, so boxes stay attached to the
pixels they enclose. Samples without a box fall back to plain ``RandomResizedCrop`` sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from headless.train.crops.window import (
    CropWindow,
    aiou,
    as_size,
    central_shape,
    check_scale_ratio,
    log_uniform,
    randint,
    random_resized_crop_window,
    resized_crop,
    uniform,
)

_BOX_CHOICES = ("union", "largest", "random", "first")


# -- boxes in a sample ----------------------------------------------------------------------------
def to_bounding_boxes(
    boxes: Sequence[Any], canvas_size: tuple[int, int]
) -> tv_tensors.BoundingBoxes:
    """``headless.boxes.Box`` objects or ``(x0, y0, x1, y1)`` tuples -> float XYXY BoundingBoxes.

    ``canvas_size`` is ``(H, W)`` of the image. An empty list gives a ``(0, 4)`` tensor, which the
    crops treat as "no box" (RandomResizedCrop).
    """
    rows = [b.xyxy() if hasattr(b, "xyxy") else tuple(b) for b in boxes]
    data = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    return tv_tensors.BoundingBoxes(data, format="XYXY", canvas_size=tuple(canvas_size))


def _sample_boxes(flat_inputs: list[Any]) -> np.ndarray:
    """All boxes of the sample as float64 XYXY rows."""
    rows = []
    for inpt in flat_inputs:
        if isinstance(inpt, tv_tensors.BoundingBoxes):
            b = F.convert_bounding_box_format(inpt, new_format=tv_tensors.BoundingBoxFormat.XYXY)
            rows.append(b.as_subclass(torch.Tensor).detach().reshape(-1, 4).double().cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, 4))


def _choose_box(
    boxes: np.ndarray, height: int, width: int, how: str, gen: torch.Generator | None
) -> tuple[float, float, float, float] | None:
    """Clip boxes to the image, drop empty ones, and pick the one the crop must cover."""
    if len(boxes) == 0:
        return None
    b = boxes.copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    areas = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    b = b[areas > 0]
    areas = areas[areas > 0]
    if len(b) == 0:
        return None
    if how == "union":
        row = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    elif how == "largest":
        row = tuple(b[int(np.argmax(areas))])
    elif how == "random":
        row = tuple(b[randint(0, len(b) - 1, gen)])
    else:  # "first"
        row = tuple(b[0])
    return tuple(float(v) for v in row)  # type: ignore[return-value]


# -- the localized crop ---------------------------------------------------------------------------
def _min_side_for_coverage(
    r: float, box_w: float, box_h: float, thr: float
) -> float:
    """Smallest ``k = sqrt(crop area)`` such that a centred crop of ratio ``r`` covers ``thr``.

    A centred crop ``k sqrt(r)`` wide and ``k / sqrt(r)`` tall covers
    ``min(k sqrt(r), W_O) min(k / sqrt(r), H_O) / A_O`` of the box: piecewise k^2 then k then 1.
    """
    a = math.sqrt(r) / box_w  # covered width fraction per unit k
    b = 1.0 / (math.sqrt(r) * box_h)
    k_a, k_b = 1.0 / a, 1.0 / b  # k at which width / height is fully covered
    k_lo, k_hi = min(k_a, k_b), max(k_a, k_b)
    k = math.sqrt(thr / (a * b))
    if k <= k_lo:
        return k
    other = b if k_lo == k_a else a  # the side still growing
    k = thr / other
    return k if k <= k_hi else k_hi


class LocalizedRandomResizedCrop(Transform):
    """RandomResizedCrop around a (pseudo) box: every crop covers at least ``thr`` of the box.

    Per sample (seed 000's rule, made exact):

    1. The box is the sample's ``BoundingBoxes`` clipped to the image (several boxes: their
       ``box_choice`` = union (default), largest, random or first). No usable box: plain
       RandomResizedCrop.
    2. Shape: scale ``s ~ U(max(scale_min, thr A_O / A_I), scale_max)`` and aspect ratio
       log-uniform in ``ratio``, as RandomResizedCrop (10 tries for a shape that fits). The seed's
       area bound alone does not guarantee coverage when the crop is narrower (or shorter) than
       the box: a 40x200 crop of a 100x100 box has enough area for thr = 0.5 but covers 0.4. Shapes
       whose *centred* coverage ``min(W_C, W_O) min(H_C, H_O) / A_O`` is below ``thr`` are
       therefore redrawn. If 10 draws fail, the scale's lower bound is raised to the exact
       feasible minimum (and the image-fitting maximum) for a drawn ratio (30 more tries); if
       that fails too (a box too elongated for the ratio range), RandomResizedCrop's fallback
       shape is placed by the same rule if it can cover ``thr``, else the whole image is used
       (it covers all of the box). If
       ``thr A_O / A_I > scale_max`` the coverage wins and ``s = thr A_O / A_I``.
    3. Position: centre = box centre + ``(dx, dy)``, ``dx ~ U(-x_r, x_r)``, ``dy ~ U(-y_r, y_r)``,
       ``x_r = alpha (W_C + W_O) / 2``, ``y_r = alpha (H_C + H_O) / 2``, ``alpha = 1 - sqrt(thr)``.
       When the crop is at least as large as the box on both axes this alone guarantees
       coverage >= sqrt(thr) per axis, i.e. aIoU >= thr, and is used unchanged. When the crop is
       smaller than the box on an axis the ranges are additionally limited so that the product
       of the per-axis coverages stays >= thr (the slack over thr is split evenly between axes).
    4. Clamping: the window is shifted (not shrunk) to lie inside the image. With the box inside
       the image, shifting a window towards the image interior never reduces its overlap with the
       box, so the guarantee survives; border boxes simply get crops pushed inwards.
    5. Pixels: the window is rounded to integers; the exact aIoU of the integer window is checked
       and, if rounding dropped it below ``thr``, the neighbouring integer positions are tried,
       then the shape is redrawn. So ``aIoU(crop, box) >= thr`` holds for every returned crop.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        thr: float,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        interpolation: str | F.InterpolationMode = "bilinear",
        antialias: bool = True,
        *,
        box_choice: str = "union",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.size = as_size(size)
        if not 0.0 <= float(thr) <= 1.0:
            raise ValueError(f"thr (least fraction of the box kept) must be in [0, 1], got {thr}")
        check_scale_ratio(scale, ratio)
        if box_choice not in _BOX_CHOICES:
            raise ValueError(f"box_choice must be one of {_BOX_CHOICES}, got {box_choice!r}")
        self.thr = float(thr)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        self.interpolation = interpolation
        self.antialias = antialias
        self.box_choice = box_choice
        self.generator = generator

    # public so that estimators and tests can sample windows without images
    def sample_window(
        self, height: int, width: int, box: Sequence[float] | None
    ) -> CropWindow:
        """One crop window for an image ``(height, width)`` and an XYXY box (None: no box)."""
        gen = self.generator
        if box is None:
            return random_resized_crop_window(height, width, self.scale, self.ratio, gen, "no box")
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        bw, bh = x1 - x0, y1 - y0
        if bw <= 0 or bh <= 0:
            return random_resized_crop_window(height, width, self.scale, self.ratio, gen, "no box")
        box = (x0, y0, x1, y1)
        thr = self.thr
        area_i, area_o = float(height * width), bw * bh
        s_lo = max(self.scale[0], thr * area_o / area_i)
        s_hi = max(s_lo, self.scale[1])

        for stage, tries in ((0, 10), (1, 30)):
            for _ in range(tries):
                r = log_uniform(self.ratio[0], self.ratio[1], gen)
                lo, hi = s_lo, s_hi
                if stage == 1:  # exact feasible minimum for this ratio; coverage beats scale_max
                    k = _min_side_for_coverage(r, bw, bh, thr)
                    lo = max(s_lo, k * k / area_i)
                    k_fit = min(width / math.sqrt(r), height * math.sqrt(r))  # fits the image
                    hi = min(max(lo, s_hi), k_fit * k_fit / area_i)
                    if lo > hi:
                        continue
                s = uniform(lo, hi, gen) if hi > lo else lo
                cw = math.sqrt(s * area_i * r)
                ch = math.sqrt(s * area_i / r)
                w = int(math.ceil(cw - 1e-9)) if stage == 1 else int(round(cw))
                h = int(math.ceil(ch - 1e-9)) if stage == 1 else int(round(ch))
                if not (0 < w <= width and 0 < h <= height):
                    continue
                cov_x, cov_y = min(w, bw) / bw, min(h, bh) / bh
                if cov_x * cov_y < thr:
                    continue
                window = self._place(height, width, box, w, h, cov_x, cov_y)
                if window is not None:
                    return window
        # RandomResizedCrop's own fallback shape (largest crop with a ratio in range), placed by
        # the same rule, else the whole image (which covers all of the box)
        h, w = central_shape(height, width, self.ratio)
        cov_x, cov_y = min(w, bw) / bw, min(h, bh) / bh
        if cov_x * cov_y >= thr:
            window = self._place(height, width, box, w, h, cov_x, cov_y)
            if window is not None:
                return CropWindow(window.top, window.left, h, w, "shape")
        return CropWindow(0, 0, height, width, "shape")

    def _place(
        self,
        height: int,
        width: int,
        box: tuple[float, float, float, float],
        w: int,
        h: int,
        cov_x: float,
        cov_y: float,
    ) -> CropWindow | None:
        """Position a ``w x h`` window by the seed's translation rule (steps 3-5)."""
        thr, gen = self.thr, self.generator
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        alpha = 1.0 - math.sqrt(thr)
        x_r = alpha * (w + bw) / 2.0
        y_r = alpha * (h + bh) / 2.0
        if cov_x < 1.0 or cov_y < 1.0:  # crop smaller than the box on an axis: limit offsets
            even = math.sqrt(thr / (cov_x * cov_y)) if thr > 0 else 0.0
            x_r = min(x_r, (w + bw) / 2.0 - cov_x * even * bw)
            y_r = min(y_r, (h + bh) / 2.0 - cov_y * even * bh)
        dx = uniform(-x_r, x_r, gen)
        dy = uniform(-y_r, y_r, gen)
        left_f = min(max((x0 + x1) / 2.0 + dx - w / 2.0, 0.0), float(width - w))
        top_f = min(max((y0 + y1) / 2.0 + dy - h / 2.0, 0.0), float(height - h))
        left_r, top_r = int(round(left_f)), int(round(top_f))
        candidates = [(left_r, top_r)]
        for lf in (math.floor(left_f), math.ceil(left_f)):
            for tf in (math.floor(top_f), math.ceil(top_f)):
                if (lf, tf) != (left_r, top_r):
                    candidates.append((int(lf), int(tf)))
        for left, top in candidates:
            if aiou((left, top, left + w, top + h), box) >= thr:
                return CropWindow(top, left, h, w)
        return None

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        boxes = _sample_boxes(flat_inputs)
        box = _choose_box(boxes, height, width, self.box_choice, self.generator)
        window = self.sample_window(height, width, box)
        return dict(window.params(), box=box, fallback=window.fallback)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resized_crop(self, inpt, params)


# -- maIoU ----------------------------------------------------------------------------------------
def maiou_approx(thr: float) -> float:
    """The seed's approximation of the mean aIoU for a threshold: ``0.5 + thr ** 0.4 / 2``."""
    return 0.5 + 0.5 * float(thr) ** 0.4


def thr_for_maiou(maiou: float) -> float:
    """Inverse of :func:`maiou_approx`: the ``thr`` expected to give a target mean aIoU."""
    if not 0.5 <= maiou <= 1.0:
        raise ValueError(f"the approximation covers mean aIoU in [0.5, 1], got {maiou}")
    return (2.0 * (maiou - 0.5)) ** 2.5


def maiou_estimate(
    thr: float,
    n: int = 4000,
    *,
    boxes: Sequence[tuple[Sequence[float], tuple[int, int]]] | None = None,
    image_size: tuple[int, int] = (375, 500),
    box_area: tuple[float, float] = (0.05, 0.8),
    box_ratio: tuple[float, float] = (0.5, 2.0),
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    seed: int = 0,
) -> float:
    """Monte-Carlo mean aIoU of :class:`LocalizedRandomResizedCrop` crops for ``thr``.

    ``boxes``: real ``(xyxy, (H, W))`` pairs (e.g. a dataset's boxes) sampled uniformly; without
    them, images are ``image_size`` (H, W) (CUB's typical 375 x 500) with boxes of an area
    fraction ~ U(box_area), an aspect ratio log-uniform in ``box_ratio`` and a uniform position.
    Standard error is about 0.3 / sqrt(n) (0.005 at the default n).
    """
    gen = torch.Generator().manual_seed(int(seed))
    crop = LocalizedRandomResizedCrop(1, thr, scale=scale, ratio=ratio, generator=gen)
    total = 0.0
    for _ in range(int(n)):
        if boxes:
            box, (height, width) = boxes[randint(0, len(boxes) - 1, gen)]
            box = tuple(float(v) for v in box)
        else:
            height, width = image_size
            box = random_box(height, width, box_area, box_ratio, gen)
        window = crop.sample_window(int(height), int(width), box)
        total += aiou(window.xyxy(), box)
    return total / int(n)


def random_box(
    height: int,
    width: int,
    area: tuple[float, float] = (0.05, 0.8),
    ratio: tuple[float, float] = (0.5, 2.0),
    generator: torch.Generator | None = None,
) -> tuple[float, float, float, float]:
    """A random XYXY box (float pixels) inside an image, for estimators and tests."""
    a = uniform(area[0], area[1], generator) * height * width
    r = log_uniform(ratio[0], ratio[1], generator)
    bw = min(float(width), math.sqrt(a * r))
    bh = min(float(height), math.sqrt(a / r))
    x0 = uniform(0.0, width - bw, generator)
    y0 = uniform(0.0, height - bh, generator)
    return (x0, y0, x0 + bw, y0 + bh)
