"""The maps a user looks at: attention (mean and per head), DINO's mask, PCA-RGB views, and
optionally a foreground mask (:mod:`.foreground`) and semantic clusters (:mod:`.clusters`).

One engine function, :func:`feature_views`, serves the napari dock and ``dinoseg features``.
Grid maps stay at patch resolution (napari lays them over the image with ``scale`` and
``translate``); dense modes (bilinear, HR-Dv2, classical, hybrid) add a full-resolution PCA view;
the foreground and the clusters are at the image's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.features.forward import (
    DEFAULT_MAX_TOKENS,
    Features,
    attention_mask,
    extract_image,
    pca_rgb,
)
from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone
    from headless.features.clusters import Clusters
    from headless.features.foreground import Foreground

DENSE_MODES = ("bilinear", "hr", "classical", "hybrid")
MODES = ("patch", *DENSE_MODES)


@dataclass
class FeatureViews:
    """Everything the features dock shows for one image."""

    attn_mean: np.ndarray  # (h, w) float32
    attn_heads: np.ndarray  # (heads, h, w) float32
    mask: np.ndarray  # (h, w) uint8, 1 = kept attention mass
    pca: np.ndarray  # (h, w, 3) float32 in [0, 1]
    scale: tuple[float, float]  # napari layer scale of the grid maps
    translate: tuple[float, float]
    weights_label: str
    mode: str = "patch"
    dense_pca: np.ndarray | None = None  # (H, W, 3) at image resolution for dense modes
    notes: list[str] = field(default_factory=list)
    features: Features | None = None
    foreground: Foreground | None = None
    clusters: Clusters | None = None

    def arrays(self) -> dict[str, Any]:
        """Arrays for an NPZ file (plain types only, so it loads without pickle)."""
        out: dict[str, Any] = {
            "attn_mean": self.attn_mean, "attn_heads": self.attn_heads, "mask": self.mask,
            "pca": self.pca, "scale": np.asarray(self.scale),
            "translate": np.asarray(self.translate),
            "weights": np.asarray(self.weights_label), "mode": np.asarray(self.mode),
        }
        if self.dense_pca is not None:
            out["dense_pca"] = self.dense_pca
        if self.features is not None:
            out["cls"] = self.features.cls[0].numpy()
        if self.foreground is not None:
            out["foreground"] = self.foreground.mask
            out["foreground_score"] = self.foreground.score
            out["foreground_method"] = np.asarray(self.foreground.method)
        if self.clusters is not None:
            out["clusters"] = self.clusters.labels
        return out


def feature_views(
    backbone: Backbone | None,
    image: np.ndarray,
    *,
    size: int | None = None,
    keep: float = 0.6,
    pca_foreground: bool = False,
    mode: str = "patch",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    dense_options: dict[str, Any] | None = None,
    foreground: str | None = None,
    foreground_options: dict[str, Any] | None = None,
    clusters: int = 0,
    cluster_options: dict[str, Any] | None = None,
) -> ProgressGen[FeatureViews]:
    """Compute the views of one image, yielding progress; returns :class:`FeatureViews`.

    ``foreground`` (``"pca"`` / ``"attention"``) adds a foreground mask from the same forward
    (options: :func:`headless.features.foreground.foreground`); ``clusters=k`` adds k semantic
    clusters of ``mode``'s dense features (options: :func:`~.clusters.semantic_clusters`; with
    ``cluster_options={"foreground_only": True}`` only the foreground is clustered).
    """
    if mode not in MODES:
        raise ValueError(f"unknown feature mode {mode!r}; choose one of {', '.join(MODES)}")
    if backbone is None:
        raise ValueError("no backbone loaded: choose a backbone and weights first")
    copts = dict(cluster_options or {})
    fg_only = bool(copts.pop("foreground_only", False))
    if fg_only and not foreground:
        raise ValueError("clustering the foreground only needs a foreground method")
    if clusters and int(clusters) < 2:
        raise ValueError(f"the number of clusters must be at least 2, got {clusters}")
    steps = 2 + (mode != "patch") + bool(foreground) + bool(clusters)
    yield Progress(0, 100 * steps, f"{backbone.name}: forward pass")
    feats = extract_image(backbone, image, size=size, max_tokens=max_tokens)
    yield Progress(100, 100 * steps, "attention and PCA")
    attn = feats.attn[0].numpy()
    mean = attn.mean(axis=0)
    mask = attention_mask(mean, keep=keep)
    pca = pca_rgb(feats.patch[0], mask=mask if pca_foreground else None)
    scale, translate = feats.layer_transform()
    notes = list(feats.notes)
    if backbone.is_random:
        notes.append("random (untrained) weights: maps show no learned structure")
    views = FeatureViews(
        attn_mean=mean.astype(np.float32), attn_heads=attn.astype(np.float32),
        mask=mask.astype(np.uint8), pca=pca, scale=scale, translate=translate,
        weights_label=backbone.weights_label, mode=mode, notes=notes, features=feats,
    )
    if mode != "patch":
        from headless.features.dense import dense_pca_rgb

        # the PCA is applied inside the transform average: only 3 channels at full resolution
        views.dense_pca = yield from _relabel(
            dense_pca_rgb(image, mode, backbone, size=size, **(dense_options or {})), 2, steps
        )
    step = 2 + (mode != "patch")
    if foreground:
        from headless.features.foreground import foreground as foreground_gen

        views.foreground = yield from _relabel(foreground_gen(
            backbone, image, method=foreground, size=size, feats=feats,
            **(foreground_options or {})), step, steps)
        step += 1
    if clusters:
        from headless.features.clusters import semantic_clusters

        dense = {**(dense_options or {}), "size": size} if mode != "classical" else {}
        views.clusters = yield from _relabel(semantic_clusters(
            backbone, image, k=int(clusters), mode=mode, dense_options=dense,
            foreground_mask=views.foreground.mask if fg_only else None, **copts), step, steps)
    yield Progress(100 * steps, 100 * steps, "done")
    return views


def _relabel(gen: ProgressGen[Any], offset: int, total: int) -> ProgressGen[Any]:
    """Re-express a sub-generator's progress as one step (100 units) of an outer total."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        frac = p.done / p.total if p.total else 0.0
        yield Progress(100 * offset + int(frac * 100), 100 * total, p.message)
