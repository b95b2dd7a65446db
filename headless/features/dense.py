"""Dense per-pixel features for segmentation: one entry point for every featuriser.

``dense_features(image, mode, backbone, ...)`` returns float32 ``(H, W, D)`` at the image's own
resolution, whatever the mode:

``patch``      ViT patch tokens, each pixel taking its patch's token (nearest; blocky).
``bilinear``   ViT patch tokens bilinearly upsampled (the usual cheap baseline).
``hr``         HR-Dv2: average over shifted (and optionally flipped) copies, see
               :mod:`headless.features.highres`; ``stride`` adds stride reduction.
``classical``  A multiscale filter bank (:mod:`headless.features.classical`); needs no weights.
``hybrid``     ``hr`` channels followed by ``classical`` channels.

The ViT modes share one engine, so ``patch`` and ``bilinear`` are HR-Dv2 with the identity
alone and the corresponding upsampling; ``stride`` applies to all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from headless.features.forward import fit_pca_map
from headless.images import ImageError, to_rgb01
from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone

MODES = ("patch", "bilinear", "hr", "classical", "hybrid")
VIT_MODES = ("patch", "bilinear", "hr", "hybrid")


def mode_options(
    mode: str, *, shifts: int = 4, dist: int | tuple[int, ...] = 1, flips: bool = False,
    stride: int | None = None, **extra: Any,
) -> dict[str, Any]:
    """The :class:`headless.features.highres.HRConfig` options a ViT ``mode`` stands for."""
    if mode == "patch":
        opts = dict(shifts=0, upsample="nearest-exact", resize="nearest-exact")
    elif mode == "bilinear":
        opts = dict(shifts=0, upsample="bilinear", resize="bilinear")
    elif mode in ("hr", "hybrid"):
        opts = dict(shifts=shifts, dist=dist, flips=flips)
    else:
        raise ValueError(f"mode {mode!r} does not use a ViT")
    opts["stride"] = stride
    opts.update(extra)
    return opts


def dense_features(
    image: np.ndarray,
    mode: str,
    backbone: Backbone | None = None,
    *,
    size: int | None = None,
    shifts: int = 4,
    dist: int | tuple[int, ...] = 1,
    flips: bool = False,
    stride: int | None = None,
    chunk: int = 8,
    **hr_options: Any,
) -> ProgressGen[np.ndarray]:
    """Per-pixel features ``(H, W, D)`` float32 at the ORIGINAL image resolution (generator).

    ``size`` resizes the model input so its longer side is ``size`` (ViT modes only; the result
    is interpolated back to the image size). ``shifts`` (0, 4 or 8), ``dist`` and ``flips`` set
    the HR-Dv2 transforms of ``hr``/``hybrid``; ``stride`` the patch-embedding stride of every ViT
    mode (``None`` = patch size); ``chunk`` copies per forward pass. Further
    :class:`headless.features.highres.HRConfig` options (``rotations``, ``upsample``, ``fit``,
    ``max_bytes``, ...) pass through. Raises ``ValueError`` for an unknown mode, a ViT mode without
    a backbone, invalid shifts/stride, or a request too large for memory
    (:class:`headless.features.highres.MemoryLimitError`).
    """
    if mode not in MODES:
        raise ValueError(f"unknown feature mode {mode!r}; choose one of {', '.join(MODES)}")
    arr = np.asarray(image)
    if arr.ndim < 2 or arr.size == 0:
        raise ImageError(f"expected a 2D image (H, W) or (H, W, C), got shape {arr.shape}")
    if mode == "classical":
        yield Progress(0, 1, "classical filter bank")
        feats = _classical(arr)
        yield Progress(1, 1, "classical filter bank")
        return feats
    if backbone is None:
        raise ValueError(
            f"mode {mode!r} needs a ViT backbone (load one with headless.features.load_backbone); "
            "mode 'classical' works without any weights"
        )
    from headless.features.highres import HRConfig, run_hr

    cfg = HRConfig.from_options(**mode_options(
        mode, shifts=shifts, dist=dist, flips=flips, stride=stride, size=size, chunk=chunk,
        **hr_options,
    ))
    if mode != "hybrid":
        out = yield from run_hr(backbone, arr, cfg, what=f"{mode!r} features")
        return out.numpy()
    # hybrid: compute the classical bank first so the memory check counts it and the
    # concatenated copy (HR + classical channels) made at the end.
    classical = _classical(arr)
    h, w = classical.shape[:2]
    hr = yield from run_hr(
        backbone, arr, cfg, what="'hybrid' features",
        extra_values=2 * classical.size + h * w * backbone.spec.embed_dim,
    )
    hr_np = hr.numpy()
    if hr_np.shape[:2] != classical.shape[:2]:
        raise RuntimeError(
            f"classical features are {classical.shape[:2]}, HR features {hr_np.shape[:2]}"
        )
    out = np.concatenate([hr_np, classical], axis=-1)
    del hr, hr_np
    return out


def _classical(arr: np.ndarray) -> np.ndarray:
    """The filter bank at the image's own resolution, as float32 ``(H, W, F)``."""
    from headless.features.classical import classical_features

    feats = np.asarray(classical_features(arr), dtype=np.float32)
    hw = to_rgb01(arr).shape[:2]
    if feats.ndim != 3 or feats.shape[:2] != hw:
        raise RuntimeError(
            f"classical_features returned shape {feats.shape}, expected ({hw[0]}, {hw[1]}, F)"
        )
    return feats


def dense_pca_rgb(
    image: np.ndarray,
    mode: str,
    backbone: Backbone | None = None,
    *,
    n_components: int = 3,
    **options: Any,
) -> ProgressGen[np.ndarray]:
    """PCA-RGB ``(H, W, 3)`` in [0, 1] of ``mode``'s dense features, without the ``(H, W, D)`` map.

    For the ViT modes the PCA is fitted on the patch tokens of the first (untransformed) copy,
    with the rules of :func:`headless.features.forward.pca_rgb` (centre, top components with their
    largest loading positive, 1st..99th percentile scaling), and applied as a linear map inside
    HR-Dv2's average (:func:`~headless.features.highres.run_hr`), so only ``n_components``
    channels are ever held at full resolution: a 1792 x 1792 view costs megabytes, not gigabytes.
    Averaging commutes with the affine map, so this equals the PCA map applied to the dense
    features.
    ``classical`` and ``hybrid`` compute the dense features and call ``pca_rgb`` on them.
    Options: as :func:`dense_features`.
    """
    if mode in ("classical", "hybrid"):
        from headless.features.forward import pca_rgb

        feats = yield from dense_features(image, mode, backbone, **options)
        return pca_rgb(feats, n_components=n_components)
    if mode not in MODES:
        raise ValueError(f"unknown feature mode {mode!r}; choose one of {', '.join(MODES)}")
    if backbone is None:
        raise ValueError(f"mode {mode!r} needs a ViT backbone; 'classical' works without weights")
    import torch

    from headless.features.highres import HRConfig, run_hr

    vit = {k: options.pop(k) for k in ("shifts", "dist", "flips", "stride") if k in options}
    cfg = HRConfig.from_options(**mode_options(mode, **vit, **options))
    fitted: dict[str, torch.Tensor] = {}

    def project(f: torch.Tensor) -> torch.Tensor:
        if not fitted:  # first batch: its first copy is the untransformed image
            w, b = fit_pca_map(f[0].reshape(-1, f.shape[-1]).double().numpy(), n_components)
            fitted["w"] = torch.from_numpy(w).float()
            fitted["b"] = torch.from_numpy(b).float()
        return f.float() @ fitted["w"].T + fitted["b"]

    out = yield from run_hr(backbone, np.asarray(image), cfg, project=project,
                            out_channels=n_components, what=f"PCA view of {mode!r} features")
    return np.clip(out.numpy(), 0.0, 1.0)
