"""The dock's napari layers: which layers it offers, the scribble layer, and its outputs.

Outputs are a segmentation Labels layer (values = the scribble values) and a per-class
probability Image layer (class axis first), both named after the image and marked
``dinoseg_output`` so they are never offered as inputs. A run on one slice writes that slice
only, so a stack keeps the slices segmented before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
    """The segmentation layer of ``img`` from a saved segmentation."""
    n = seg.ndim
    return viewer.add_labels(
        seg, name=name, scale=img.scale[-n:], translate=img.translate[-n:], opacity=0.5,
        metadata={META_KEY: {"role": "output", "image": img.name}, "dinoseg_output": True})


def write_segmentations(viewer: Any, segs: list[Any], index: tuple[int, ...] | None,
                        image_name: str) -> None:
    """Write ``segs`` into the segmentation / probability layers of ``image_name``.

    ``index`` is the slice of one segmentation, or None for one segmentation per slice. The
    layers are made (or remade, when their shape or dtype no longer fits) as needed.
    """
    from headless.segment.probe import class_values_array

    img = viewer.layers[image_name]
    shape = spatial_shape(img)
    lead = len(shape) - 2
    seg0 = segs[-1]
    dtype = class_values_array(seg0.class_values).dtype
    n_cls = len(seg0.class_values)
    meta = {META_KEY: {"role": "output", "image": image_name}, "dinoseg_output": True}
    seg_name, prob_name = f"{image_name} segmentation", f"{image_name} probabilities"
    scale, translate = tuple(img.scale[-len(shape):]), tuple(img.translate[-len(shape):])

    labels_layer = viewer.layers[seg_name] if seg_name in viewer.layers else None
    if labels_layer is None or tuple(labels_layer.data.shape) != shape or \
            not np.can_cast(dtype, labels_layer.data.dtype):
        if labels_layer is not None:
            viewer.layers.remove(labels_layer)
        labels_layer = viewer.add_labels(np.zeros(shape, dtype), name=seg_name, scale=scale,
                                         translate=translate, opacity=0.5, metadata=meta)
    prob_shape = (n_cls, *shape)
    prob_layer = viewer.layers[prob_name] if prob_name in viewer.layers else None
    if prob_layer is None or tuple(prob_layer.data.shape) != prob_shape:
        if prob_layer is not None:
            viewer.layers.remove(prob_layer)
        prob_layer = viewer.add_image(
            np.zeros(prob_shape, np.float32), name=prob_name, colormap="magma",
            contrast_limits=(0.0, 1.0), scale=(1.0, *scale), translate=(0.0, *translate),
            visible=False, metadata=meta,
        )
        prob_layer.axis_labels = ("class", *prob_layer.axis_labels[1:])
    if index is None:  # every slice
        for i, s in enumerate(segs):
            idx = np.unravel_index(i, shape[:lead]) if lead else ()
            labels_layer.data[idx] = s.labels
            prob_layer.data[(slice(None), *idx)] = np.moveaxis(s.proba, -1, 0)
    else:
        labels_layer.data[index] = seg0.labels
        prob_layer.data[(slice(None), *index)] = np.moveaxis(seg0.proba, -1, 0)
    labels_layer.refresh()
    prob_layer.refresh()
    try:
        values = list(seg0.class_values)
        labels_layer.features = {"index": [0, *values],
                                 "class": ["unlabelled", *seg0.class_names]}
    except Exception:  # noqa: BLE001 - names are a display nicety
        pass
