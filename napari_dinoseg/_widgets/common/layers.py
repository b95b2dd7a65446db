"""Conversions between napari layers and the engine's arrays."""

from __future__ import annotations

from typing import Any

import numpy as np


def current_slice(layer: Any, viewer: Any) -> np.ndarray:
    """The 2D image (grey or RGB) of ``layer`` that the viewer shows now.

    Stacks give their current slice (``viewer.dims.current_step`` over the leading axes);
    multiscale layers give the finest level that is at most ~2048 px on a side.
    """
    data = layer.data
    if getattr(layer, "multiscale", False):
        levels = list(data)
        sides = [max(lv.shape[-3:-1]) if layer.rgb else max(lv.shape[-2:]) for lv in levels]
        data = next((lv for lv, s in zip(levels, sides) if s <= 2048), levels[-1])
    spatial = 3 if getattr(layer, "rgb", False) else 2
    lead = data.ndim - spatial
    if lead > 0:
        step = viewer.dims.current_step
        offset = viewer.dims.ndim - layer.ndim
        idx = []
        for i in range(lead):
            world = step[offset + i] if offset + i < len(step) else 0
            idx.append(int(np.clip(world, 0, data.shape[i] - 1)))
        data = data[tuple(idx)]
    return np.asarray(data)


def slice_label(layer: Any, viewer: Any) -> str:
    """' [z=3]' for stacks, '' for 2D images: keeps layer names of different slices apart."""
    spatial = 3 if getattr(layer, "rgb", False) else 2
    lead = layer.ndim - spatial
    if lead <= 0:
        return ""
    offset = viewer.dims.ndim - layer.ndim
    idx = [int(viewer.dims.current_step[offset + i]) for i in range(lead)]
    return " [" + ",".join(str(i) for i in idx) + "]"


def add_or_update(viewer: Any, kind: str, data: Any, name: str, select: bool = True,
                  **kwargs: Any) -> Any:
    """Replace the data of layer ``name`` if it exists (keeping the user's display settings),
    else add a new layer of ``kind`` ('image' or 'labels', :func:`add_in_turns`)."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape == np.shape(data) and type(layer).__name__.lower() == kind:
            layer.data = data
            for key in ("scale", "translate", "metadata"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            return layer
        viewer.layers.remove(layer)
    add = {"labels": add_labels, "image": add_image}[kind]
    return add(viewer, data, select=select, name=name, **kwargs)


#: a Labels layer's tool overlays (polygon, brush stroke): napari makes the vispy visuals of
#: those that are visible as the layer is added (~20 ms each here), on top of ~80 ms for the
#: layer itself; those it finds hidden it makes once they are shown
TOOL_OVERLAYS = ("polygon", "brush_stroke")


def add_in_turns(viewer: Any, layer: Any, select: bool = True,
                 overlays: tuple[str, ...] = (), paintable: bool = False,
                 mode: str | None = None) -> Any:
    """Add ``layer`` to ``viewer`` in turns of the event loop (inline in sync mode).

    napari adds a layer in one piece: its visuals, its controls panel, the selection change and
    (in the same turn) its first paint, 100-140 ms of frozen viewer on this machine (napari's
    own ``add_*`` 200-250 ms in the benchmark). Here only the layer and its visuals are added
    in the caller's turn, hidden, with its ``overlays`` hidden; it is shown on the next turn
    (the first paint: shader programs, texture), then napari makes its controls
    (:mod:`.layer_controls`), then selects it (``select``), then shows its overlays, one per
    turn. A layer made hidden stays hidden. ``select=False`` leaves napari's selection as it is
    (an output layer). ``paintable=True`` slices the hidden layer at once: napari slices only
    visible layers, and painting into a layer never sliced fails (a script paints right after
    the dock made its scribble layer). ``mode`` (e.g. "select") is set as the layer is shown:
    napari keeps a hidden layer in pan / zoom, whatever mode it is given.
    """
    from functools import partial

    from napari_dinoseg._widgets.common.layer_controls import insert_with_controls_later
    from napari_dinoseg._widgets.common.qt_helpers import in_steps
    from napari_dinoseg._widgets.common.sync import sync_mode

    show = bool(layer.visible)
    if show:
        layer.visible = False
    hidden = hide_overlays(layer, overlays)
    layers = viewer.layers
    threaded = not sync_mode()
    activate = getattr(layers, "_activate_on_insert", None)
    # napari selects a layer as it is inserted; here never (an output), or on a later turn
    unselected = activate is not None and (threaded or not select)
    if unselected:
        layers._activate_on_insert = False  # napari's private switch: no selection change
    try:
        if threaded:
            make_controls = insert_with_controls_later(viewer, layer)
        else:
            make_controls = None
            layers.append(layer)
    finally:
        if activate is not None:
            layers._activate_on_insert = activate
    if paintable:
        layer.set_view_slice()  # (hidden: napari's own refresh skips it)
    if show:
        in_steps(viewer, partial(show_in_parts, viewer, layer, mode))
    if make_controls is not None:
        in_steps(viewer, make_controls)
    if select and unselected:
        in_steps(viewer, partial(_select, viewer, layer))
    in_steps(viewer, *(partial(setattr, overlay, "visible", True) for overlay in hidden))
    return layer


def show_in_parts(viewer: Any, layer: Any, mode: str | None = None) -> None:
    """Show new ``layer`` (if still in ``viewer``) in ``mode``, the parts of its visual one per
    turn.

    A layer's first paint compiles the shader programs of every part of its visual: a Shapes
    layer's faces, highlight mesh, lines, vertices and its (even empty) text, 100-120 ms in one
    paint here; a Points layer's markers and text, 65 ms. Its first part is drawn on this turn,
    the others are hidden (napari never hides them itself) and shown one per turn after it.
    """
    from functools import partial

    from napari_dinoseg._widgets.common.qt_helpers import in_steps

    if layer not in viewer.layers:
        return
    later = [part for part in _visual_parts(viewer, layer)[1:] if part.visible]
    for part in later:
        part.visible = False
    layer.visible = True
    if mode is not None:  # (napari keeps a hidden layer in pan / zoom: set once shown)
        layer.mode = mode
    in_steps(viewer, *(partial(setattr, part, "visible", True) for part in later))


def _visual_parts(viewer: Any, layer: Any) -> list[Any]:
    """The parts (vispy sub-visuals) of ``layer``'s visual in napari's canvas; none for a
    single visual (Image, Labels), another napari or vispy."""
    from napari_dinoseg._widgets.common.qt_helpers import vispy_canvas

    try:
        node = vispy_canvas(viewer).layer_to_visual[layer].node
    except (AttributeError, KeyError):
        return []
    return list(getattr(node, "_subvisuals", []))


def _select(viewer: Any, layer: Any) -> None:
    """Select ``layer`` alone (napari's selection on insert), if it is still in ``viewer``."""
    if layer in viewer.layers:
        viewer.layers.selection.active = layer


def add_labels(viewer: Any, data: Any, select: bool = True, paintable: bool = False,
               **kwargs: Any) -> Any:
    """``viewer.add_labels`` through :func:`add_in_turns` (its tool overlays later too)."""
    from napari.layers import Labels

    return add_in_turns(viewer, Labels(data, **kwargs), select, TOOL_OVERLAYS, paintable)


def add_image(viewer: Any, data: Any, select: bool = True, **kwargs: Any) -> Any:
    """``viewer.add_image`` (one layer: no ``channel_axis``) through :func:`add_in_turns`."""
    from napari.layers import Image

    return add_in_turns(viewer, Image(data, **kwargs), select)


def hide_overlays(layer: Any, names: tuple[str, ...]) -> list[Any]:
    """Hide ``layer``'s visible overlays called ``names`` (napari's private ``_overlays``;
    none when a napari version lacks it); the overlays hidden."""
    found = getattr(layer, "_overlays", {})
    hidden = []
    for name in names:
        overlay = found.get(name) if hasattr(found, "get") else None
        if overlay is not None and getattr(overlay, "visible", False):
            overlay.visible = False
            hidden.append(overlay)
    return hidden


#: Metadata key under which every dock records where an output layer came from.
PROVENANCE_KEY = "dinoseg"


def output_name(kind: str, image: str, random_weights: bool = False) -> str:
    """Short layer names that differ at the start: ``"attn mean · astronaut"``.

    The kind comes first so names stay readable in napari's narrow layer list; the image is kept
    (after ``·``) so outputs of different images do not collide. Backbone and weights go to the
    metadata (:func:`output_metadata`), except a short "(random)" flag for untrained weights.
    """
    name = f"{kind} · {image}"
    return f"{name} (random)" if random_weights else name


def output_metadata(kind: str, image: str, **provenance: Any) -> dict[str, Any]:
    """Metadata of an output layer: never offered as an input; what made it, for the tooltip."""
    info = {"kind": kind, "image": image, **{k: v for k, v in provenance.items() if v is not None}}
    return {"dinoseg_output": True, PROVENANCE_KEY: info}


def provenance_text(metadata: dict[str, Any]) -> str:
    """One line for a tooltip / status: ``"attn mean of astronaut: dinov2_vits14, official"``."""
    info = metadata.get(PROVENANCE_KEY, {})
    rest = ", ".join(f"{v}" for k, v in info.items() if k not in ("kind", "image"))
    head = f"{info.get('kind', '?')} of {info.get('image', '?')}"
    return f"{head}: {rest}" if rest else head
