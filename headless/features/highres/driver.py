"""The backbone front end of every HR path: prepare the image, size the request, run the average.

:func:`run_hr` is shared by the full map (:func:`hr_features`, here), the linear map
(:mod:`headless.features.highres.linear`) and the sparse samples
(:mod:`headless.features.highres.sample`); the full map is refused with a clear message
(:class:`~headless.features.highres.memory.MemoryLimitError`) when it would not fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from headless.features.forward import preprocess
from headless.features.highres.average import average_over_transforms
from headless.features.highres.config import HRConfig
from headless.features.highres.memory import (
    ACTIVATION_BYTES_PER_TOKEN_CHANNEL,
    MemoryEstimate,
    estimate_memory,
    memory_limit,
    plan_chunk,
)
from headless.features.highres.stride import check_stride, patch_tokens, stride_grid
from headless.images import to_rgb01
from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone


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
    hw = (int(rgb.shape[0]), int(rgb.shape[1]))
    p = int(backbone.patch_size)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if cfg.whole_patches and (h, w) != hw and (h % p or w % p):
        x = _resize_input(rgb, backbone, (math.ceil(h / p) * p, math.ceil(w / p) * p))
    return x, hw, notes


def _resize_input(rgb: np.ndarray, backbone: Backbone, hw: tuple[int, int]) -> torch.Tensor:
    """``rgb`` resized once (antialiased bilinear, as ``preprocess``) to ``hw`` and normalised."""
    t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    t = torch.nn.functional.interpolate(t[None], size=hw, mode="bilinear", antialias=True,
                                        align_corners=False)[0].clamp(0, 1)
    mean = torch.tensor(backbone.spec.mean).view(3, 1, 1)
    std = torch.tensor(backbone.spec.std).view(3, 1, 1)
    return (t - mean) / std


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
