"""The linear-map path: ``W @ HR + b`` holding a probe's C channels at full resolution, never D.

What the segmenter predicts with: a 1792 x 1792 image with C = 4 peaks at about 1.5 GB for the
whole process (ViT-S/14 on CPU; see tests/benchmarks/bench_highres.py), where the full map would
not fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from headless.features.highres.config import HRConfig
from headless.features.highres.driver import run_hr
from headless.progress import ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone


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
