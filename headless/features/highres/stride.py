"""Stride reduction (Amir et al.): a patch-embedding stride ``s < P`` and the lean token forward.

The stride multiplies the token count by ``(P / s) ** 2`` (attention makes the cost quartic in
``P / s``); the position embeddings are resized bicubically by timm. :func:`patch_tokens` is the
forward every HR path runs, stride-reduced or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from headless.features.forward import pad_to_patch

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone


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
