"""Unsupervised semantic clusters: k-means on dense (HR-Dv2) features, with optional colour and
position terms, following the HR-Dv2 author's two "paths" (tldr-group/HR-Dv2 README):

1. fuse the colour-and-position vector ``psi = (cos h, sin h, s, v, x, y)`` with a 5-component
   PCA of the HR features and cluster;
2. cluster only the foreground (:mod:`headless.features.foreground`), background left out.

Each block (PCA of the features, colour, position) is divided by its root-mean-square spread,
so a weight means what it says: ``colour_weight=1`` makes colour count as much as the features,
``0`` leaves it out. Labels are ``1..k`` ordered by decreasing size; ``0`` is "not clustered"
(the background in path 2), which napari's Labels layer shows as transparent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone

DEFAULT_COMPONENTS = 5  # the HR-Dv2 README's "5-component PCA"
MAX_FIT_PIXELS = 20000  # k-means is fitted on a fixed random sample, then every pixel assigned


@dataclass
class Clusters:
    """Cluster labels at image resolution and how they were made."""

    labels: np.ndarray  # (H, W) int32, 1..k, 0 = not clustered
    k: int
    colour_weight: float
    position_weight: float
    mode: str = ""
    notes: list[str] = field(default_factory=list)


def colour_terms(image: np.ndarray) -> np.ndarray:
    """``(H, W, 4)``: ``cos h, sin h, s, v`` of the image in HSV (grey images: h = s = 0)."""
    from skimage.color import rgb2hsv

    from headless.images import to_rgb01

    hsv = rgb2hsv(to_rgb01(np.asarray(image)))
    angle = 2 * np.pi * hsv[..., 0]
    return np.stack([np.cos(angle), np.sin(angle), hsv[..., 1], hsv[..., 2]], axis=-1)


def position_terms(hw: tuple[int, int]) -> np.ndarray:
    """``(H, W, 2)``: row and column in [0, 1] (the same scale on both axes: row / max side)."""
    h, w = hw
    side = max(h, w, 2) - 1
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy / side, xx / side], axis=-1)


def _normalised(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``block`` centred and scaled so that its mean squared norm over ``mask`` is 1."""
    flat = block.reshape(-1, block.shape[-1]).astype(np.float64)
    sel = flat[mask.reshape(-1)]
    centred = flat - sel.mean(axis=0)
    rms = np.sqrt(((centred[mask.reshape(-1)]) ** 2).sum(axis=1).mean())
    return (centred / rms if rms > 1e-12 else centred * 0.0).reshape(block.shape)


def pca_project(features: np.ndarray, n_components: int, mask: np.ndarray | None = None,
                seed: int = 0) -> np.ndarray:
    """The top ``n_components`` principal components of ``(H, W, D)`` features, ``(H, W, n)``."""
    flat = np.asarray(features, np.float32).reshape(-1, features.shape[-1])
    sel = flat if mask is None else flat[np.asarray(mask, bool).reshape(-1)]
    rng = np.random.default_rng(seed)
    if len(sel) > 4 * MAX_FIT_PIXELS:
        sel = sel[rng.choice(len(sel), 4 * MAX_FIT_PIXELS, replace=False)]
    mean = sel.mean(axis=0)
    _, _, vt = np.linalg.svd(sel.astype(np.float64) - mean, full_matrices=False)
    comps = vt[:n_components].T.astype(np.float32)
    return ((flat - mean) @ comps).reshape(*features.shape[:2], comps.shape[1])


def cluster_pixels(
    features: np.ndarray, k: int, *, image: np.ndarray | None = None,
    colour_weight: float = 0.0, position_weight: float = 0.0,
    n_components: int | None = DEFAULT_COMPONENTS, mask: np.ndarray | None = None, seed: int = 0,
) -> np.ndarray:
    """k-means labels ``(H, W)`` (1..k by decreasing size, 0 outside ``mask``).

    ``features`` is ``(H, W, D)``; ``n_components=None`` clusters them as they are, otherwise
    their top principal components. ``image`` is needed for a colour term.
    """
    from sklearn.cluster import KMeans

    feats = np.asarray(features)
    if feats.ndim != 3:
        raise ValueError(f"features must be (H, W, D), got shape {feats.shape}")
    if int(k) < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if colour_weight < 0 or position_weight < 0:
        raise ValueError("colour and position weights must not be negative")
    hw = feats.shape[:2]
    m = np.ones(hw, bool) if mask is None else np.asarray(mask, bool)
    if m.shape != hw:
        raise ValueError(f"mask is {m.shape}, features are {hw}")
    if m.sum() < k:
        raise ValueError(f"only {int(m.sum())} pixels to cluster into k = {k} clusters")
    if n_components:
        feats = pca_project(feats, n_components, m, seed)
    blocks = [_normalised(feats, m)]
    if colour_weight > 0:
        if image is None:
            raise ValueError("a colour term needs the image")
        col = colour_terms(image)
        if col.shape[:2] != hw:
            raise ValueError(f"the image is {col.shape[:2]}, the features {hw}")
        blocks.append(colour_weight * _normalised(col, m))
    if position_weight > 0:
        blocks.append(position_weight * _normalised(position_terms(hw), m))
    x = np.concatenate(blocks, axis=-1).reshape(-1, sum(b.shape[-1] for b in blocks))[m.ravel()]
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= MAX_FIT_PIXELS else x[rng.choice(len(x), MAX_FIT_PIXELS, replace=False)]
    km = KMeans(n_clusters=int(k), n_init=4, random_state=seed).fit(fit.astype(np.float64))
    raw = km.predict(x.astype(np.float64))
    order = np.argsort(-np.bincount(raw, minlength=int(k)), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, int(k) + 1)
    labels = np.zeros(hw[0] * hw[1], np.int32)
    labels[m.ravel()] = rank[raw]
    return labels.reshape(hw)


def dense_components(
    backbone: Backbone | None, image: np.ndarray, mode: str = "hr", *,
    n_components: int = DEFAULT_COMPONENTS, **options: Any,
) -> ProgressGen[np.ndarray]:
    """``(H, W, n)``: the top PCA components of ``mode``'s dense features at image resolution.

    ViT modes fit the PCA on the untransformed copy's patch tokens and apply it inside HR-Dv2's
    average (only ``n`` channels at full resolution, as :func:`dense_pca_rgb`).
    """
    from headless.features.dense import MODES, dense_features, mode_options

    if mode not in MODES:
        raise ValueError(f"unknown feature mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode in ("classical", "hybrid"):
        feats = yield from dense_features(image, mode, backbone, **options)
        return pca_project(feats, n_components)
    if backbone is None:
        raise ValueError(f"mode {mode!r} needs a ViT backbone; 'classical' works without weights")
    import torch

    from headless.features.highres import HRConfig, run_hr

    vit = {k: options.pop(k) for k in ("shifts", "dist", "flips", "stride") if k in options}
    cfg = HRConfig.from_options(**mode_options(mode, **vit, **options))
    fitted: dict[str, torch.Tensor] = {}

    def project(f: torch.Tensor) -> torch.Tensor:
        if not fitted:  # the first batch's first copy is the untransformed image
            x = f[0].reshape(-1, f.shape[-1]).double()
            mean = x.mean(0)
            _, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
            fitted["w"] = vt[:n_components].T.float()
            fitted["m"] = mean.float()
        return (f.float() - fitted["m"]) @ fitted["w"]

    out = yield from run_hr(backbone, np.asarray(image), cfg, project=project,
                            out_channels=n_components, what=f"PCA of {mode!r} features")
    return out.numpy()


def semantic_clusters(
    backbone: Backbone | None, image: np.ndarray, *, k: int = 4, mode: str = "hr",
    colour_weight: float = 0.0, position_weight: float = 0.0,
    n_components: int = DEFAULT_COMPONENTS, foreground_mask: np.ndarray | None = None,
    seed: int = 0, dense_options: dict[str, Any] | None = None,
) -> ProgressGen[Clusters]:
    """Clusters of one image (generator): dense features -> PCA -> (+ colour, position) -> k-means.

    ``foreground_mask`` (path 2) clusters only those pixels; the rest get label 0.
    """
    if int(k) < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if colour_weight < 0 or position_weight < 0:
        raise ValueError("colour and position weights must not be negative")
    yield Progress(0, 2, f"{mode} features")
    gen = dense_components(backbone, image, mode, n_components=n_components,
                           **(dense_options or {}))
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            comps = stop.value
            break
        yield Progress(0, 2, p.message)
    yield Progress(1, 2, f"k-means, k = {k}")
    labels = cluster_pixels(comps, k, image=image, colour_weight=colour_weight,
                            position_weight=position_weight, n_components=None,
                            mask=foreground_mask, seed=seed)
    notes = []
    if backbone is not None and backbone.is_random and mode != "classical":
        notes.append("random (untrained) weights: clusters follow no learned semantics")
    yield Progress(2, 2, "done")
    return Clusters(labels=labels, k=int(k), colour_weight=colour_weight,
                    position_weight=position_weight, mode=mode, notes=notes)
