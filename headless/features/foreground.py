"""Foreground segmentation from a ViT: the CLS attention or the first PCA component of the patch
tokens, thresholded, optionally refined with the dense CRF.

Two scores, both per patch, then brought to image resolution:

``pca``        the first principal component of the patch tokens (the DINOv2 paper's
               foreground split); its sign is chosen so that the image border, where background
               usually is, scores low. With ``hr=True`` the component is evaluated on HR-Dv2
               features through the linear-map path (one channel at full resolution).
``attention``  the last layer's CLS attention, mean over heads (DINO's saliency).
``fused``      two k-means clusters of the 5-component PCA of the tokens fused with the colour
               terms ``(cos h, sin h, s, v)`` (the HR-Dv2 README's path 1 with k = 2); the
               cluster touching the border less is the foreground. Measured on the nuclei image
               it is the only one of the three that beats Otsu's intensity threshold (README).

The score is scaled to [0, 1] by its 1st..99th percentiles and bilinearly resampled to the image;
the mask is ``score > threshold`` (Otsu's threshold of the score by default). ``crf=True`` turns
the score into probabilities (a logistic around the threshold) and refines them with
:func:`headless.segment.crf.crf_refine`, whose bilateral kernel pulls the mask onto the image's
edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone
    from headless.features.forward import Features

FG_METHODS = ("pca", "attention", "fused")


@dataclass
class Foreground:
    """A foreground score and mask at the image's resolution."""

    score: np.ndarray  # (H, W) float32 in [0, 1], high = foreground
    mask: np.ndarray  # (H, W) uint8, 1 = foreground
    method: str
    threshold: float
    crf: bool = False
    notes: list[str] = field(default_factory=list)


def _scale01(values: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    ref = values if ref is None else ref
    lo, hi = np.percentile(ref, [1, 99])
    return np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0).astype(np.float32)


def border_sign(grid: np.ndarray) -> float:
    """+1 if the border patches score below the interior on average, else -1."""
    border = np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])
    return 1.0 if border.mean() <= grid.mean() else -1.0


def pca_direction(patch: np.ndarray) -> tuple[np.ndarray, float]:
    """First principal direction ``w`` and offset ``b`` of ``(h, w, D)`` tokens, signed so that
    ``tokens @ w + b`` is low on the image border (the usual background)."""
    x = np.asarray(patch, np.float64).reshape(-1, patch.shape[-1])
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    w = vt[0]
    grid = ((x - mean) @ w).reshape(patch.shape[:2])
    s = border_sign(grid)
    return s * w, float(-s * mean @ w)


def grid_score(feats: Features, method: str) -> np.ndarray:
    """The per-patch score ``(h, w)`` of ``method`` (not yet scaled)."""
    if method == "attention":
        return feats.attn[0].numpy().mean(axis=0).astype(np.float64)
    if method == "pca":
        patch = feats.patch[0].numpy()
        w, b = pca_direction(patch)
        return patch.reshape(-1, patch.shape[-1]) @ w + b
    raise ValueError(f"unknown foreground method {method!r}; choose {' or '.join(FG_METHODS)}")


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold (scikit-image) of a score map; 0.5 for a constant map."""
    from skimage.filters import threshold_otsu

    v = np.asarray(values).ravel()
    return float(threshold_otsu(v)) if np.ptp(v) > 0 else 0.5


def finish(image: np.ndarray, score: np.ndarray, method: str, threshold: float | str = "otsu",
           crf: bool = False, crf_params: Any = None, temperature: float = 0.1) -> Foreground:
    """Threshold a [0, 1] score map at image resolution; optionally refine it with the CRF."""
    t = otsu(score) if threshold == "otsu" else float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"foreground threshold must lie in [0, 1] or be 'otsu', got {threshold}")
    mask = score > t
    if crf:
        from headless.segment.crf import crf_refine

        p = 1.0 / (1.0 + np.exp(-(score.astype(np.float64) - t) / temperature))
        proba = np.stack([1.0 - p, p], axis=-1).astype(np.float32)
        mask = crf_refine(image, proba, crf_params).argmax(axis=-1) == 1
    return Foreground(score=score.astype(np.float32), mask=mask.astype(np.uint8), method=method,
                      threshold=t, crf=crf)


def fused_score(feats: Features, image: np.ndarray, colour_weight: float = 1.0,
                n_components: int = 5, seed: int = 0) -> np.ndarray:
    """1.0 on the foreground cluster of the fused k = 2 clustering, 0.0 elsewhere."""
    from headless.features.clusters import cluster_pixels, pca_project
    from headless.features.forward import grid_to_image

    comps = pca_project(feats.patch[0].numpy(), n_components)
    dense = grid_to_image(comps, feats, order=1)
    labels = cluster_pixels(dense, 2, image=image, colour_weight=colour_weight,
                            n_components=None, seed=seed)
    one = (labels == 1).astype(np.float64)
    return (one if border_sign(one) > 0 else 1.0 - one).astype(np.float32)


def foreground_from_features(feats: Features, image: np.ndarray, method: str = "pca",
                             colour_weight: float = 1.0, **options: Any) -> Foreground:
    """Foreground of an image from one forward's features (no further ViT passes)."""
    from headless.features.forward import grid_to_image

    if method == "fused":
        score = fused_score(feats, image, colour_weight)
        return finish(image, score, method, **{"threshold": 0.5, **options})
    g = grid_score(feats, method).reshape(feats.grid)
    g = _scale01(g)
    score = grid_to_image(g, feats, order=1).clip(0.0, 1.0)
    return finish(image, score, method, **options)


def foreground(
    backbone: Backbone, image: np.ndarray, *, method: str = "pca", size: int | None = None,
    threshold: float | str = "otsu", crf: bool = False, hr: bool = False,
    hr_options: dict[str, Any] | None = None, feats: Features | None = None,
) -> ProgressGen[Foreground]:
    """Foreground score and mask of one image (generator yielding progress).

    ``feats`` reuses a forward already computed on ``image`` (the features dock does this).
    ``hr=True`` (PCA only) evaluates the first component on HR-Dv2 features.
    """
    from headless.features.forward import extract_image

    if method not in FG_METHODS:
        raise ValueError(f"unknown foreground method {method!r}; choose {' or '.join(FG_METHODS)}")
    if hr and method not in ("pca",):
        raise ValueError("hr=True needs method 'pca' (attention is not a linear map of features)")
    if threshold != "otsu" and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"foreground threshold must lie in [0, 1] or be 'otsu', got {threshold}")
    yield Progress(0, 3, f"{backbone.name}: forward pass")
    if feats is None:
        feats = extract_image(backbone, image, size=size)
    opts = {"threshold": threshold, "crf": crf}
    if not hr:
        yield Progress(2, 3, "foreground" + (" + CRF" if crf else ""))
        fg = foreground_from_features(feats, image, method, **opts)
    else:
        from headless.features.highres import hr_linear

        patch = feats.patch[0].numpy()
        w, b = pca_direction(patch)
        grid = patch.reshape(-1, patch.shape[-1]) @ w + b
        hr_opts = {"shifts": 4, **(hr_options or {}), "size": size}
        gen = hr_linear(backbone, image, w[None].astype(np.float32), np.float32([b]), **hr_opts)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                dense = stop.value[..., 0]
                break
            yield Progress(1, 3, p.message)
        yield Progress(2, 3, "foreground" + (" + CRF" if crf else ""))
        fg = finish(image, _scale01(dense, grid), method, **opts)
    fg.notes = list(feats.notes)
    if backbone.is_random:
        fg.notes.append("random (untrained) weights: the foreground is meaningless")
    yield Progress(3, 3, "done")
    return fg


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
