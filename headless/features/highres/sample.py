"""The sparse path: HR features at chosen pixels (scribbles), never building the full map.

Training a probe needs features only where the user drew; each pixel reads its few low-res cells
per transform, so the cost is the forward passes plus N x D floats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from headless.features.highres.config import HRConfig
from headless.features.highres.driver import run_hr
from headless.progress import ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone


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
