"""What the features dock adds to the viewer, as plain data (no Qt): names, geometry, metadata.

Names follow the shared convention (``"attn mean · astronaut"``; the kind first so names differ
at the start); image, backbone, weights and mode go to the metadata (``provenance_text``).

Geometry: a grid map's pixel ``i`` is the patch that saw image pixels ``[i p s, (i + 1) p s)``, so
its top-left edge lies on the image's, and when a side is not a multiple of the patch size the
last row / column (which saw the zero padding) extends past the image by the padding, less than
one patch. Per-head attention is one 2D mosaic placed to the right of the image (no stack, so no
extra dimension slider).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_dinoseg._widgets.common.layers import output_metadata, output_name

#: Short kinds, distinct in their first characters, in the order the layers are added.
KINDS = ("attn mean", "attn heads", "attn mask", "PCA", "PCA dense", "foreground", "clusters")


@dataclass
class LayerSpec:
    """One layer to add or refresh: ``viewer.add_<kind>(data, name=name, **kwargs)``."""

    kind: str  # "image" or "labels"
    data: Any
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def foreground_options(method: str, crf: bool, k: int, colour: float, position: float,
                       fg_only: bool) -> dict[str, Any]:
    """The :func:`headless.features.views.feature_views` options of the dock's choices."""
    fg = None if method in ("", "off") else method
    return {
        "foreground": fg, "foreground_options": {"crf": bool(crf)} if fg else None,
        "clusters": int(k),
        "cluster_options": {"colour_weight": float(colour), "position_weight": float(position),
                            "foreground_only": bool(fg_only and fg)} if k else None,
    }


def heads_mosaic(heads: np.ndarray, gap: int = 1) -> tuple[np.ndarray, int]:
    """``(n, h, w)`` -> one 2D array of the maps tiled in rows (zero gaps); and the column count."""
    n, h, w = heads.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), 0.0, np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = heads[i]
    return out, cols


def grid_geometry(views: Any, base_scale: tuple[float, float],
                  base_tr: tuple[float, float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """World ``scale`` and ``translate`` of a grid map over an image layer."""
    scale = (views.scale[0] * base_scale[0], views.scale[1] * base_scale[1])
    translate = (base_tr[0] + views.translate[0] * base_scale[0],
                 base_tr[1] + views.translate[1] * base_scale[1])
    return scale, translate


def output_layers(views: Any, image: str, backbone: str, slice_tag: str,
                  base_scale: tuple[float, float], base_tr: tuple[float, float],
                  image_width: float | None = None) -> list[LayerSpec]:
    """The layers for one result, each laid over (or, for the heads, beside) the image."""
    random = views.weights_label.startswith("random")
    source = f"{image}{slice_tag}"
    scale, translate = grid_geometry(views, base_scale, base_tr)

    def meta(kind: str, **extra: Any) -> dict[str, Any]:
        return output_metadata(kind, source, backbone=backbone, weights=views.weights_label,
                               mode=views.mode if kind in ("PCA dense", "clusters") else None,
                               **extra)

    def name(kind: str, uses_weights: bool = True) -> str:
        return output_name(kind, source, random and uses_weights)

    gh, gw = views.attn_mean.shape
    mosaic, cols = heads_mosaic(views.attn_heads)
    width = image_width if image_width is not None else gw * scale[1]
    heads_tr = (translate[0], translate[1] + width + scale[1])
    specs = [
        LayerSpec("image", views.attn_mean, name("attn mean"), dict(
            scale=scale, translate=translate, colormap="inferno", opacity=0.6,
            blending="additive", metadata=meta("attn mean"))),
        LayerSpec("image", mosaic, name("attn heads"), dict(
            scale=scale, translate=heads_tr, colormap="inferno", visible=False,
            metadata=meta("attn heads", heads=int(views.attn_heads.shape[0]), columns=cols))),
        LayerSpec("labels", views.mask, name("attn mask"), dict(
            scale=scale, translate=translate, opacity=0.4, metadata=meta("attn mask"))),
        LayerSpec("image", views.pca, name("PCA"), dict(
            rgb=True, scale=scale, translate=translate, opacity=0.7,
            visible=views.dense_pca is None, metadata=meta("PCA"))),
    ]
    if views.dense_pca is not None:
        specs.append(LayerSpec("image", views.dense_pca,
                               name("PCA dense", views.mode != "classical"), dict(
                                   rgb=True, scale=base_scale, translate=base_tr, opacity=0.7,
                                   metadata=meta("PCA dense"))))
    if views.foreground is not None:
        fg = views.foreground
        specs.append(LayerSpec("labels", fg.mask, name("foreground"), dict(
            scale=base_scale, translate=base_tr, opacity=0.5,
            metadata=meta("foreground", method=fg.method + (" + CRF" if fg.crf else ""),
                          threshold=round(fg.threshold, 3)))))
    if views.clusters is not None:
        cl = views.clusters
        specs.append(LayerSpec("labels", cl.labels, name("clusters", cl.mode != "classical"),
                               dict(scale=base_scale, translate=base_tr, opacity=0.5,
                                    metadata=meta("clusters", k=cl.k, colour=cl.colour_weight,
                                                  position=cl.position_weight))))
    return specs
