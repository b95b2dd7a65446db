"""What the embedding dock puts in the viewer, without Qt: the map's Points layer arguments,
its colours (a class palette or viridis over a score), a one-line legend, and where the opened
image sits (beside the map, as tall as it).

UMAP / PCA units are arbitrary (a map may span 0.1 or 50), so the map is drawn in a box
:data:`WORLD` units wide: the point size (and napari's size slider) reads the same for any map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: "colour by" choices: key -> what the dock shows
COLOUR_CHOICES: dict[str, str] = {
    "class": "class",
    "knn_distance": "k-th neighbour distance",
    "lof": "local outlier factor",
    "mislabel": "mislabel (k-NN disagrees)",
}

#: categorical colours for classes (matplotlib's tab10)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")

#: the longer side of the drawn map, in world units
WORLD = 1000.0

LAYER_PREFIX = "embedding · "
IMAGE_PREFIX = "image · "


def layer_name(folder: str | Path) -> str:
    return LAYER_PREFIX + (Path(folder).name or str(folder))


def _hex_rgba(colour: str) -> tuple[float, float, float, float]:
    c = colour.lstrip("#")
    return (int(c[0:2], 16) / 255, int(c[2:4], 16) / 255, int(c[4:6], 16) / 255, 1.0)


def class_colours(labels: np.ndarray | None, n: int) -> np.ndarray:
    """(N, 4) RGBA: one palette colour per class (all the first colour without labels)."""
    idx = np.zeros(n, int) if labels is None else np.asarray(labels, int)
    table = np.array([_hex_rgba(c) for c in PALETTE], np.float32)
    return table[idx % len(PALETTE)]


def _span(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)


def score_colours(values: np.ndarray) -> np.ndarray:
    """(N, 4) RGBA: viridis from the lowest (dark blue) to the highest (yellow) score."""
    from napari.utils.colormaps import ensure_colormap

    v = np.nan_to_num(np.asarray(values, float))
    lo, hi = _span(v)
    t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return np.asarray(ensure_colormap("viridis").map(t.astype(np.float32)), np.float32)


def colours(ctl: Any, by: str) -> np.ndarray:
    """The face colours of the map for the controller's result, coloured ``by``."""
    if by == "class":
        return class_colours(ctl.result.labels, len(ctl.result.paths))
    return score_colours(ctl.colour_values(by))


def legend_html(ctl: Any, by: str) -> str:
    """One line saying what the colours mean (rich text for a QLabel)."""
    res = ctl.result
    if by == "class":
        if res.labels is None:
            return "loose images: no classes (one colour)"
        return "  ".join(f"<span style='color:{PALETTE[i % len(PALETTE)]}'>■</span> {c}"
                         for i, c in enumerate(res.classes))
    lo, hi = _span(ctl.colour_values(by))
    return (f"{COLOUR_CHOICES[by]}: <span style='color:#440154'>■</span> {lo:.3g} … "
            f"<span style='color:#fde725'>■</span> {hi:.3g}")


def relative_names(folder: Path, paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        try:
            out.append(p.relative_to(folder).as_posix())
        except ValueError:
            out.append(p.name)
    return out


def features(ctl: Any, folder: Path) -> dict[str, Any]:
    """Per-point features: the image (relative to the folder), its class and its scores."""
    res, emb = ctl.result, ctl.result.embedding
    n = len(res.paths)
    classes = [res.classes[i] for i in res.labels] if res.labels is not None else [""] * n
    mis = emb.mislabel if emb.mislabel is not None else np.full(n, np.nan, np.float32)
    return {"image": relative_names(folder, res.paths), "class": classes,
            "knn_distance": np.asarray(emb.knn_distance, float),
            "lof": np.asarray(emb.lof, float), "mislabel": np.asarray(mis, float)}


def map_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) corners of the map in (row, column) world units, never of zero size."""
    lo, hi = points.min(0), points.max(0)
    size = np.maximum(hi - lo, 1e-6)
    return lo, lo + size


def world_points(ctl: Any) -> np.ndarray:
    """The map's (row, column) points, shifted and scaled into a box :data:`WORLD` wide."""
    pts = np.asarray(ctl.points(), float)
    lo, hi = map_box(pts)
    return (pts - lo) * (WORLD / float(max(hi - lo)))


def points_kwargs(ctl: Any, folder: Path, by: str) -> dict[str, Any]:
    """Everything ``viewer.add_points`` takes for the map, besides its data."""
    size = WORLD * 0.035
    return {
        "name": layer_name(folder), "features": features(ctl, folder),
        "face_color": colours(ctl, by), "size": size, "border_width": 0.08,
        "border_width_is_relative": True, "border_color": "#202020",
        "metadata": {"dinoseg_embedding": {"folder": str(folder),
                                           "paths": [str(p) for p in ctl.result.paths],
                                           "projection": ctl.result.embedding.projection,
                                           "model": ctl.result.model_label}},
    }


def plane(image: np.ndarray) -> np.ndarray:
    """The first 2-D plane (grey) or colour plane (RGB) of a possibly stacked image."""
    from headless.images import is_rgb

    keep = 3 if is_rgb(image) else 2
    while image.ndim > keep:
        image = image[0]
    return image


def beside(points: np.ndarray, image: np.ndarray) -> tuple[tuple[float, float],
                                                            tuple[float, float]]:
    """``(scale, translate)`` placing ``image`` to the right of the map, as tall as the map."""
    lo, hi = map_box(points)
    height = float(hi[0] - lo[0])
    s = height / image.shape[0]
    gap = 0.08 * float(max(hi - lo))
    return (s, s), (float(lo[0]), float(hi[1]) + gap)
