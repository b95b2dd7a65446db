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

from napari_dinoseg._widgets.common.layers import add_image, add_labels
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
    """A scribble Labels layer over ``img`` (same scale and translation, marked as scribbles),
    paintable at once; not selected (the caller hands it over with
    :func:`~napari_dinoseg._widgets.common.selection.select_for_painting` a turn later: napari's
    selection change and paint mode, 20-40 ms, then get a turn of their own)."""
    return add_labels(
        viewer, data, select=False, paintable=True, name=name, scale=img.scale[-data.ndim:],
        translate=img.translate[-data.ndim:],
        metadata={META_KEY: {"role": "scribbles", "image": img.name}}, opacity=0.8,
    )


def add_saved_segmentation(viewer: Any, img: Any, seg: np.ndarray, name: str) -> Any:
    """The segmentation layer of ``img`` from a saved segmentation (the selection stays)."""
    n = seg.ndim
    with keep_selection(viewer):
        return add_labels(
            viewer, seg, select=False, name=name, scale=img.scale[-n:],
            translate=img.translate[-n:], opacity=0.5,
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
    add a dimension slider under the canvas for the whole viewer, even while hidden. A new
    probability layer is added one per turn of the event loop (each costs napari ~100 ms on the
    GUI thread; several classes in one callback froze the viewer that many times over).
    """
    with keep_selection(viewer):
        _write_segmentations(viewer, segs, index, image_name)
    if not probabilities:
        return
    from napari_dinoseg._widgets.common.qt_helpers import in_steps

    def class_step(k: int, cname: str) -> Any:
        def step() -> None:
            if image_name in viewer.layers:  # the user may close it in between
                with keep_selection(viewer):
                    _write_probability(viewer, segs, index, image_name, k, cname)
        return step

    in_steps(viewer, *(class_step(k, c) for k, c in enumerate(segs[-1].class_names)))


def _layer_fitting(viewer: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """The layer ``name`` if its shape and dtype still fit, else None (a misfit is removed)."""
    layer = viewer.layers[name] if name in viewer.layers else None
    if layer is not None and (tuple(layer.data.shape) != shape
                              or not np.can_cast(dtype, layer.data.dtype)):
        viewer.layers.remove(layer)
        layer = None
    return layer


def _fill(target: np.ndarray, segs: list[Any], index: tuple[int, ...] | None,
          shape: tuple[int, ...], part: Any) -> None:
    """Write ``part(seg)`` of each segmentation into ``target`` (one slice, or every slice)."""
    lead = len(shape) - 2
    items = list(enumerate(segs)) if index is None else [(None, segs[-1])]
    for i, s in items:
        idx = index if i is None else (np.unravel_index(i, shape[:lead]) if lead else ())
        target[idx] = part(s)


def _placement(viewer: Any, image_name: str) -> tuple[tuple[int, ...], dict[str, Any]]:
    """The image's spatial shape, and the scale / translation / metadata of its outputs."""
    img = viewer.layers[image_name]
    shape = spatial_shape(img)
    return shape, {"scale": tuple(img.scale[-len(shape):]),
                   "translate": tuple(img.translate[-len(shape):]),
                   "metadata": {META_KEY: {"role": "output", "image": image_name},
                                "dinoseg_output": True}}


def _write_segmentations(viewer: Any, segs: list[Any], index: tuple[int, ...] | None,
                         image_name: str) -> None:
    from headless.segment.probe import class_values_array

    shape, where = _placement(viewer, image_name)
    seg0 = segs[-1]
    dtype = class_values_array(seg0.class_values).dtype
    seg_name = f"{image_name} segmentation"
    # a layer made now gets its data whole (no second refresh: napari maps every label to a
    # colour and uploads the texture again on each one); an existing one is written in place
    values = list(seg0.class_values)
    features = {"index": [0, *values], "class": ["unlabelled", *seg0.class_names]}
    labels_layer = _layer_fitting(viewer, seg_name, shape, dtype)
    if labels_layer is None:
        data = np.zeros(shape, dtype)
        _fill(data, segs, index, shape, lambda s: s.labels)
        labels_layer = add_labels(viewer, data, select=False, name=seg_name, opacity=0.5, **where)
    else:
        _fill(labels_layer.data, segs, index, shape, lambda s: s.labels)
        labels_layer.refresh()
    try:
        labels_layer.features = features
    except Exception:  # noqa: BLE001 - names are a display nicety
        pass


def _write_probability(viewer: Any, segs: list[Any], index: tuple[int, ...] | None,
                       image_name: str, k: int, cname: str) -> None:
    """Write class ``k``'s probability into its (hidden) layer, made when missing."""
    shape, where = _placement(viewer, image_name)
    name = probability_name(image_name, cname)
    layer = _layer_fitting(viewer, name, shape, np.float32)
    if layer is None:
        data = np.zeros(shape, np.float32)
        _fill(data, segs, index, shape, lambda s: s.proba[..., k])
        where["metadata"] = {**where["metadata"], "class": cname, "class_index": k}
        add_image(viewer, data, select=False, name=name, colormap="magma", blending="additive",
                  contrast_limits=(0.0, 1.0), visible=False, **where)
    else:
        _fill(layer.data, segs, index, shape, lambda s: s.proba[..., k])
        layer.refresh()
