"""The attention density crop (seed 000): RandomResizedCrop centred by DINO attention.

:class:`AttentionDensityCrop` samples the crop centre from a cleaned CLS attention density; it
reads the sample's :class:`~headless.train.attention_maps.tensors.AttentionMap` (computed once per
dataset and cached by :mod:`headless.train.attention_maps`) and crops everything else in the
sample (images, masks, boxes) to the same window. No map: plain ``RandomResizedCrop`` sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from headless.train.attention_maps.cleaning import clean_attention_density
from headless.train.attention_maps.tensors import AttentionDensity, AttentionMap
from headless.train.crops.window import (
    CropWindow,
    as_size,
    central_shape,
    check_scale_ratio,
    log_uniform,
    random_resized_crop_window,
    resized_crop,
    uniform,
)


class AttentionDensityCrop(Transform):
    """RandomResizedCrop whose centre is drawn from a cleaned DINO attention density (seed 000).

    The sample must hold an :class:`AttentionMap` (e.g. ``AttentionMapStore.attention_map(path)``;
    maps are computed once per dataset by ``compute_attention_maps``, the data loader never runs
    the ViT). Per sample:

    1. Density: :func:`~headless.train.attention_maps.clean_attention_density` (maximum
       replaced by the mean, Gaussian smoothing of ``sigma`` cells, optional min-max, softmax at
       ``temperature``).
    2. Centre: a grid cell drawn from the density, then a uniform point inside that cell (cells
       tile the whole image), so centres are continuous, not stuck on cell corners.
    3. Size: as RandomResizedCrop: scale ~ U(scale), ratio log-uniform, 10 tries for a shape that
       fits in the image, else RandomResizedCrop's fallback shape.
    4. Clamping: the window, centred on the drawn point, is shifted to lie inside the image. The
       drawn centre always stays inside the window (it lies within half a window of the clamped
       edge), though no longer at its middle near borders.

    No map in the sample: plain RandomResizedCrop. Boxes, masks and images in the sample are
    cropped to the same window.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        temperature: float,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        minmax: bool = True,
        sigma: float = 1.0,
        interpolation: str | F.InterpolationMode = "bilinear",
        antialias: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.size = as_size(size)
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0 (grid cells), got {sigma}")
        check_scale_ratio(scale, ratio)
        self.temperature = float(temperature)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        self.minmax = bool(minmax)
        self.sigma = float(sigma)
        self.interpolation = interpolation
        self.antialias = antialias
        self.generator = generator

    @property
    def clean_params(self) -> tuple[float, float, bool]:
        """``(temperature, sigma, minmax)``: pass to ``PackedAttentionMaps.densities``."""
        return (self.temperature, self.sigma, self.minmax)

    def density(self, attn_map: Any) -> np.ndarray:
        """The cleaned density (``(h, w)``, sums to 1) this transform samples from.

        An :class:`AttentionDensity` prepared with this crop's settings is used as it is.
        """
        if isinstance(attn_map, torch.Tensor):  # plain-tensor ops: TVTensor dispatch is slow
            a = attn_map.as_subclass(torch.Tensor)
            a = a.detach().cpu().numpy() if a.requires_grad or a.device.type != "cpu" else a.numpy()
        else:
            a = np.asarray(attn_map)
        if isinstance(attn_map, AttentionDensity):
            if attn_map.clean_params != self.clean_params:
                raise ValueError(
                    f"this density was cleaned with (temperature, sigma, minmax) = "
                    f"{attn_map.clean_params}, the crop uses {self.clean_params}: prepare it "
                    "with packed.densities(*crop.clean_params) or pass the raw AttentionMap"
                )
            return a
        return clean_attention_density(
            a, self.temperature, sigma=self.sigma, minmax=self.minmax
        )

    def sample_centre(self, height: int, width: int, density: np.ndarray) -> tuple[float, float]:
        """``(cx, cy)`` in image pixels drawn from a density over grid cells tiling the image."""
        gh, gw = density.shape
        cdf = np.cumsum(density, axis=None)
        u, v, t = torch.rand(3, generator=self.generator).tolist()
        # inverse CDF (10x cheaper than torch.multinomial per item); cells of zero mass are
        # never chosen because searchsorted(side="right") skips flat steps of the CDF
        k = min(int(np.searchsorted(cdf, t * cdf[-1], side="right")), cdf.size - 1)
        i, j = divmod(k, gw)
        return (j + u) * width / gw, (i + v) * height / gh

    def sample_window(self, height: int, width: int, density: np.ndarray | None) -> CropWindow:
        """One crop window for an image ``(height, width)`` and a density (None: no map)."""
        gen = self.generator
        if density is None:
            return random_resized_crop_window(height, width, self.scale, self.ratio, gen, "no map")
        cx, cy = self.sample_centre(height, width, density)
        area = height * width
        for _ in range(10):
            target = area * uniform(self.scale[0], self.scale[1], gen)
            r = log_uniform(self.ratio[0], self.ratio[1], gen)
            w = int(round(math.sqrt(target * r)))
            h = int(round(math.sqrt(target / r)))
            if 0 < w <= width and 0 < h <= height:
                break
        else:
            h, w = central_shape(height, width, self.ratio)
        left = min(max(int(math.floor(cx - w / 2.0 + 0.5)), 0), width - w)
        top = min(max(int(math.floor(cy - h / 2.0 + 0.5)), 0), height - h)
        return CropWindow(top, left, h, w)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        maps = [x for x in flat_inputs if isinstance(x, AttentionMap)]
        density = self.density(maps[0]) if maps else None
        window = self.sample_window(height, width, density)
        return dict(window.params(), fallback=window.fallback)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, AttentionMap):
            return inpt
        return resized_crop(self, inpt, params)
