"""The attention map as a torchvision ``tv_tensor``, the type a crop finds in its sample.

:class:`AttentionMap` is a raw CLS attention map over a patch grid that tiles the image;
:class:`AttentionDensity` one already cleaned into a crop's sampling density. The map store wraps
its cached arrays in these types and the crops (:mod:`headless.train.crops`) read them, so they
live here, below both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors


class AttentionMap(tv_tensors.TVTensor):
    """A ``(h, w)`` attention map over a patch grid that tiles the whole image.

    Cell ``(i, j)`` covers rows ``[i H / h, (i + 1) H / h)`` and columns
    ``[j W / w, (j + 1) W / w)`` whatever the image size, so the map stays valid if the image is
    resized before the crop.
    Other v2 transforms pass it through untouched (no kernels are registered for it); the crops
    read it and also pass it through, so after a crop it still describes the uncropped image.
    """

    def __new__(
        cls,
        data: Any,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | int | None = None,
        requires_grad: bool | None = None,
    ) -> AttentionMap:
        if isinstance(data, np.ndarray) and data.dtype == np.float16:
            data = data.astype(np.float32)
        tensor = cls._to_tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        if tensor.ndim == 3:
            tensor = tensor.float().mean(dim=0)
        if tensor.ndim != 2 or tensor.numel() == 0:
            raise ValueError(
                f"an attention map must be (h, w) or (heads, h, w), got {tuple(tensor.shape)}"
            )
        return tensor.as_subclass(cls)


class AttentionDensity(AttentionMap):
    """An :class:`AttentionMap` that is already the cleaned sampling density (sums to 1).

    Made by ``PackedAttentionMaps.densities(...)[i]``; ``clean_params`` records the
    ``(temperature, sigma, minmax)`` it was cleaned with, and
    :class:`~headless.train.crops.AttentionDensityCrop` refuses a density prepared for other
    settings rather than silently sampling from it.
    """

    clean_params: tuple[float, float, bool] | None

    def __new__(
        cls,
        data: Any,
        *,
        clean_params: tuple[float, float, bool] | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | int | None = None,
        requires_grad: bool | None = None,
    ) -> AttentionDensity:
        out = super().__new__(cls, data, dtype=dtype, device=device, requires_grad=requires_grad)
        out.clean_params = clean_params
        return out
