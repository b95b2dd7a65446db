"""The dock's napari layers: which layers it offers, the scribble layer, and its outputs.

Outputs are a segmentation Labels layer (values = the scribble values) and, when asked, one
probability Image layer per class (the image's shape: no extra viewer dimension), named after
the image and marked
``dinoseg_output`` so they are never offered as inputs. A run on one slice writes that slice
only, so a stack keeps the slices segmented before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_dinoseg._widgets.common.selection import keep_selection
from napari_dinoseg._widgets.segment.controller import spatial_shape

META_KEY = "dinoseg_segment"


def input_layer_names(viewer: Any) -> tuple[list[str], list[str]]:
    """(image layers, scribble Labels layers) the dock may work on: none of its outputs."""
    from napari.layers import Image, Labels

    images = [ly.name for ly in viewer.layers if isinstance(ly, Image)
              and not ly.metadata.get("dinoseg_output") and META_KEY not in ly.metadata]
    labels = [ly.name for ly in viewer.layers if isinstance(ly, Labels)
              and ly.metadata.get(META_KEY, {}).get("role", "scribbles") == "scribbles"
              and not ly.metadata.get("dinoseg_output")]
    return images, labels


def label_colors(layer: Any, values: Any) -> dict[int, tuple[float, ...]]:
    """RGBA (0..1) of each label value as ``layer`` paints it: the class table's swatches."""
    if layer is None:
        return {}
    try:
        return {int(v): tuple(float(c) for c in layer.get_color(int(v))) for v in values}
    except Exception:  # noqa: BLE001 - swatches are a display nicety, never fatal
        return {}


def set_label_features(layer: Any, features: dict[str, list]) -> None:
    """Class names shown next to label values; a display nicety, never fatal."""
    try:
        layer.features = features
    except Exception:  # noqa: BLE001 - names are a display nicety, never fatal
        pass


def add_scribble_layer(viewer: Any, img: Any, data: np.ndarray, name: str) -> Any:
    """A scribble Labels layer over ``img`` (same scale and translation, marked as scribbles)."""
    return viewer.add_labels(
        data, name=name, scale=img.scale[-data.ndim:], translate=img.translate[-data.ndim:],
        metadata={META_KEY: {"role": "scribbles", "image": img.name}}, opacity=0.8,
    )


def add_saved_segmentation(viewer: Any, img: Any, seg: np.ndarray, name: str) -> Any:
    """The segmentation layer of ``img`` from a saved segmentation (the selection stays)."""
    n = seg.ndim
    with keep_selection(viewer):
        return viewer.add_labels(
            seg, name=name, scale=img.scale[-n:], translate=img.translate[-n:], opacity=0.5,
            metadata={META_KEY: {"role": "output", "image": img.name}, "dinoseg_output": True})


def probability_name(image_name: str, class_name: str) -> str:
    return f"{image_name} p({class_name})"


def write_segmentations(viewer: Any, segs: list[Any], index: tuple[int, ...] | None,
                        image_name: str, probabilities: bool = False) -> None:
    """Write ``segs`` into the segmentation (and, if asked, probability) layers of ``image_name``.

    ``index`` is the slice of one segmentation, or None for one segmentation per slice. The
    layers are made (or remade, when their shape or dtype no longer fits) as needed, without
    taking the selection (or the paint mode) away from the layer the user works on.
    Probabilities are one layer per class with the image's own shape: a class-first stack would
    add a dimension slider under the canvas for the whole viewer, even while hidden.
    """
    with keep_selection(viewer):
        _write_segmentations(viewer, segs, index, image_name, probabilities)


def _layer_fitting(viewer: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """The layer ``name`` if its shape and dtype still fit, else None (a misfit is removed)."""
    layer = viewer.layers[name] if name in viewer.layers else None
    if layer is not None and (tuple(layer.data.shape) != shape
                              or not np.can_cast(dtype, layer.data.dtype)):
        viewer.layers.remove(layer)
        layer = None
    return layer


def _write_segmentations(viewer: Any, segs: list[Any], index: tuple[int, ...] | None,
                         image_name: str, probabilities: bool) -> None:
    from headless.segment.probe import class_values_array

    img = viewer.layers[image_name]
    shape = spatial_shape(img)
    lead = len(shape) - 2
    seg0 = segs[-1]
    dtype = class_values_array(seg0.class_values).dtype
    meta = {META_KEY: {"role": "output", "image": image_name}, "dinoseg_output": True}
    seg_name = f"{image_name} segmentation"
    scale, translate = tuple(img.scale[-len(shape):]), tuple(img.translate[-len(shape):])

    items = list(enumerate(segs)) if index is None else [(None, seg0)]

    def fill(target: Any, part: Any) -> None:
        for i, s in items:
            idx = index if i is None else (np.unravel_index(i, shape[:lead]) if lead else ())
            target[idx] = part(s)

    # a layer made now gets its data whole (no second refresh: napari maps every label to a
    # colour and uploads the texture again on each one); an existing one is written in place
    values = list(seg0.class_values)
    features = {"index": [0, *values], "class": ["unlabelled", *seg0.class_names]}
    labels_layer = _layer_fitting(viewer, seg_name, shape, dtype)
    if labels_layer is None:
        data = np.zeros(shape, dtype)
        fill(data, lambda s: s.labels)
        labels_layer = viewer.add_labels(data, name=seg_name, scale=scale, translate=translate,
                                         opacity=0.5, metadata=meta)
    else:
        fill(labels_layer.data, lambda s: s.labels)
        labels_layer.refresh()
    for k, cname in enumerate(seg0.class_names if probabilities else []):
        name = probability_name(image_name, cname)
        layer = _layer_fitting(viewer, name, shape, np.float32)
        if layer is None:
            data = np.zeros(shape, np.float32)
            fill(data, lambda s, k=k: s.proba[..., k])
            viewer.add_image(
                data, name=name, colormap="magma", blending="additive",
                contrast_limits=(0.0, 1.0), scale=scale, translate=translate, visible=False,
                metadata={**meta, "class": cname, "class_index": k})
        else:
            fill(layer.data, lambda s, k=k: s.proba[..., k])
            layer.refresh()
    try:
        labels_layer.features = features
    except Exception:  # noqa: BLE001 - names are a display nicety
        pass
