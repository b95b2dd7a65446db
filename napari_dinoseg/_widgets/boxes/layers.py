"""Boxes <-> napari Shapes rectangles, with label / score / source as features.

Coordinates: napari centres image pixel ``(r, c)`` at world point ``(r, c)``, so the pixel spans
``[r - 0.5, r + 0.5]``. Our boxes use pixel *edges* (pixel ``c`` spans ``[c, c + 1)``), so a box
``[x0, y0, x1, y1]`` is drawn as the rectangle with corners ``(y0 - 0.5, x0 - 0.5)`` and
``(y1 - 0.5, x1 - 0.5)``: it then hugs exactly the pixels it holds. :data:`PIXEL_OFFSET` is that
half pixel; every conversion here applies it both ways.

A layer holding one image's boxes is 2D. A dataset of many images (a COCO file, a VOC folder)
becomes one 3D layer whose first axis is the image index, in the order of
``metadata["dinoseg_boxes"]["images"]``, which also holds each image's size and the classes, so
that the writers can rebuild the dataset exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from headless.boxes import Box, BoxSet

PIXEL_OFFSET = 0.5
META_KEY = "dinoseg_boxes"
FEATURE_COLUMNS = ("label", "score", "source", "difficult", "truncated", "caption")
DEFAULT_FEATURES = {"label": "object", "score": math.nan, "source": "user",
                    "difficult": False, "truncated": False, "caption": "user"}
TEXT = {"string": "{caption}", "anchor": "upper_left", "size": 9, "color": "yellow"}
SOURCE_COLORS = {"user": "#ffcc00", "gt": "#00ff66", "lost": "#ff3b30", "tokencut": "#00b7ff",
                 "most": "#ff66ff", "dino": "#ff9500", "sam": "#7cff7c"}


def caption(box: Box) -> str:
    """The text shown on a rectangle: method and score ('lost 0.83'), or the source."""
    text = box.source if box.score is None else f"{box.source} {box.score:.2f}"
    return text if box.label == "object" else f"{box.label}: {text}"


def box_to_rectangle(box: Box, plane: int | None = None) -> np.ndarray:
    """The 4 corners (rows, cols) of a napari rectangle for a box; a leading plane if given."""
    o = PIXEL_OFFSET
    y0, x0, y1, x1 = box.y0 - o, box.x0 - o, box.y1 - o, box.x1 - o
    corners = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
    if plane is not None:
        corners = np.concatenate([np.full((4, 1), float(plane)), corners], axis=1)
    return corners


def rectangle_to_xyxy(vertices: np.ndarray) -> tuple[float, float, float, float]:
    """Pixel-edge box of any shape's vertices (its axis-aligned bounding box)."""
    v = np.asarray(vertices, dtype=float)[:, -2:]
    o = PIXEL_OFFSET
    return (float(v[:, 1].min() + o), float(v[:, 0].min() + o),
            float(v[:, 1].max() + o), float(v[:, 0].max() + o))


FEATURE_DTYPES = {"label": object, "score": float, "source": object, "difficult": bool,
                  "truncated": bool, "caption": object}


def boxes_to_features(boxes: Sequence[Box]) -> Any:
    """A features table (pandas) with fixed column types, so an empty layer still accepts
    new user boxes with the default features."""
    import pandas as pd

    columns = {
        "label": [b.label for b in boxes],
        "score": [math.nan if b.score is None else float(b.score) for b in boxes],
        "source": [b.source for b in boxes],
        "difficult": [bool(b.difficult) for b in boxes],
        "truncated": [bool(b.truncated) for b in boxes],
        "caption": [caption(b) for b in boxes],
    }
    return pd.DataFrame({k: pd.Series(v, dtype=FEATURE_DTYPES[k]) for k, v in columns.items()})


def _column(features: Any, name: str, n: int) -> list[Any]:
    """Column ``name`` of a features table / properties dict, defaults where absent."""
    default = DEFAULT_FEATURES[name]
    if features is None:
        return [default] * n
    try:
        col = features[name]
    except (KeyError, IndexError, TypeError):
        return [default] * n
    values = list(col.tolist()) if hasattr(col, "tolist") else list(col)
    if len(values) != n:
        return [default] * n
    return values


def _score(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _text(v: Any, default: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return default
    s = str(v)
    return s if s else default


def shapes_to_boxes(
    data: Sequence[np.ndarray], features: Any = None
) -> tuple[list[Box], list[int]]:
    """Boxes of a list of shapes (bounding box of each); also the planes (or -1 for 2D).

    Shapes with no area (a line drawn by mistake, a point) are left out.
    """
    n = len(data)
    cols = {c: _column(features, c, n) for c in FEATURE_COLUMNS}
    boxes, planes = [], []
    for i, verts in enumerate(data):
        v = np.asarray(verts, dtype=float)
        if v.ndim != 2 or v.shape[0] == 0:
            continue
        x0, y0, x1, y1 = rectangle_to_xyxy(v)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            continue
        boxes.append(Box(
            x0, y0, x1, y1,
            label=_text(cols["label"][i], "object"),
            score=_score(cols["score"][i]),
            source=_text(cols["source"][i], "user"),
            difficult=bool(cols["difficult"][i]) if cols["difficult"][i] is not None else False,
            truncated=bool(cols["truncated"][i]) if cols["truncated"][i] is not None else False,
        ))
        planes.append(int(round(v[0, 0])) if v.shape[1] >= 3 else -1)
    return boxes, planes


def layer_to_boxes(layer: Any) -> list[Box]:
    """The boxes of a 2D Shapes layer, in image pixels."""
    boxes, _ = shapes_to_boxes(layer.data, layer.features)
    return boxes


def shapes_kwargs(boxes: Sequence[Box], name: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """``add_shapes`` keyword arguments for a layer of box rectangles."""
    return {
        "shape_type": "rectangle",
        "features": boxes_to_features(boxes),
        "feature_defaults": dict(DEFAULT_FEATURES),
        "text": dict(TEXT),
        "edge_color": [SOURCE_COLORS.get(b.source, "#ffcc00") for b in boxes] or "#ffcc00",
        "face_color": "transparent",
        "edge_width": 2,
        "name": name,
        "metadata": {META_KEY: metadata},
    }


def image_layer_data(
    image: str, boxes: Sequence[Box], size: tuple[int, int] | None, name: str | None = None
) -> tuple[list[np.ndarray], dict[str, Any], str]:
    """A 2D Shapes layer-data tuple for one image's boxes."""
    meta = {"images": [image], "sizes": {image: list(size)} if size else {},
            "classes": sorted({b.label for b in boxes})}
    data = [box_to_rectangle(b) for b in boxes]
    return data, shapes_kwargs(boxes, name or f"boxes · {image}", meta), "shapes"


def boxset_to_layer_data(boxset: BoxSet, name: str = "boxes") -> tuple[list, dict, str]:
    """A Shapes layer-data tuple for a dataset: 2D for one image, else 3D (plane = image)."""
    images = boxset.images
    if len(images) == 1:
        image = images[0]
        data, kwargs, kind = image_layer_data(image, boxset.boxes.get(image, []),
                                              boxset.sizes.get(image), name)
        kwargs["metadata"][META_KEY]["classes"] = boxset.all_classes()
        return data, kwargs, kind
    data, boxes = [], []
    for plane, image in enumerate(images):
        for b in boxset.boxes.get(image, []):
            data.append(box_to_rectangle(b, plane))
            boxes.append(b)
    meta = {"images": images, "sizes": {k: list(v) for k, v in boxset.sizes.items()},
            "classes": boxset.all_classes()}
    kwargs = shapes_kwargs(boxes, name, meta)
    if not data:
        kwargs["ndim"] = 3
    return data, kwargs, "shapes"


def layer_data_to_boxset(data: Sequence[np.ndarray], meta: dict[str, Any]) -> BoxSet:
    """Rebuild a dataset from a Shapes layer's data and attributes (an npe2 writer's input).

    Image names and sizes come from ``metadata["dinoseg_boxes"]``; a layer made elsewhere (no
    such metadata) is taken as one image named after the layer, whose size is the extent of
    its boxes.
    """
    features = meta.get("features")
    if features is None or len(getattr(features, "columns", features)) == 0:
        features = meta.get("properties")
    info = (meta.get("metadata") or {}).get(META_KEY) or {}
    boxes, planes = shapes_to_boxes(data, features)
    images = [str(i) for i in info.get("images", [])]
    sizes = {str(k): (int(v[0]), int(v[1])) for k, v in (info.get("sizes") or {}).items()}
    out = BoxSet(classes=[str(c) for c in info.get("classes", [])])
    if not images:
        images = [str(meta.get("name") or "image")]
    three_d = any(p >= 0 for p in planes)
    for image in images:
        out.boxes[image] = []
        if image in sizes:
            out.sizes[image] = sizes[image]
    for b, p in zip(boxes, planes):
        if three_d:
            if not 0 <= p < len(images):
                raise ValueError(f"a box lies on plane {p}, but the layer has {len(images)} "
                                 "image(s)")
            image = images[p]
        elif len(images) == 1:
            image = images[0]
        else:
            raise ValueError("a 2D layer of boxes belongs to one image; this one names "
                             f"{len(images)}")
        out.boxes[image].append(b)
    for image in images:
        if image not in out.sizes:  # unknown size: the boxes' extent
            bs = out.boxes[image]
            w = max([math.ceil(b.x1) for b in bs], default=1)
            h = max([math.ceil(b.y1) for b in bs], default=1)
            out.sizes[image] = (max(w, 1), max(h, 1))
        clipped = [b.clip(*out.sizes[image]) for b in out.boxes[image]]
        out.boxes[image] = [b for b in clipped if b.width > 0 and b.height > 0]
    out.classes = out.all_classes()
    return out
