"""The layers of the image the boxes dock shows: the image, and its boxes as editable shapes.

:class:`ShapesEditor` shows an image (its own layer, or a layer of the user's that it adopts and
never removes), builds the Shapes layer from boxes laid over it, listens to its data and
features events, marks shapes the user adds as user boxes, and calls ``on_edit`` after every
real edit (move, resize, add, delete, a changed feature) but never while it rebuilds the layer
itself. The conversions are :mod:`.layers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_dinoseg._widgets.boxes.layers import DEFAULT_FEATURES, image_layer_data, layer_to_boxes
from napari_dinoseg._widgets.common.layers import add_image, add_in_turns
from napari_dinoseg._widgets.common.qt_helpers import show_next_turn


class ShapesEditor:
    """One image of ``viewer`` and its boxes as an editable Shapes layer (``layer``)."""

    def __init__(self, viewer: Any, on_edit: Callable[[], Any]) -> None:
        self.viewer = viewer
        self.layer: Any = None
        self.image_layer: Any = None
        self._own_image_layer = False
        self._on_edit = on_edit
        self._updating = False
        self._n_before = 0

    def boxes(self) -> list[Any]:
        """The boxes as the layer holds them now ([] without a layer)."""
        return [] if self.layer is None else layer_to_boxes(self.layer)

    def show_image(self, data: Any, name: str) -> Any:
        """Show ``data`` in an image layer of our own (removed again by :meth:`remove`).

        Our layer of the previous image is reused when it can hold the new one (same kind:
        grey or colour): removing a napari layer runs a full garbage collection on the GUI
        thread (0.2-0.4 s with torch loaded) and a new layer builds its visuals again.
        """
        layer = self.image_layer
        if self._own_image_layer and layer is not None and layer in self.viewer.layers and \
                _same_kind(layer, data):
            layer.data = data
            layer.name = name
            if not layer.rgb:
                layer.reset_contrast_limits()
            _refresh_status(self.viewer)
            return layer
        if self._own_image_layer and layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        # the selection stays (on the boxes, when they are being edited)
        self.image_layer = add_image(self.viewer, data, select=False, name=name)
        self._own_image_layer = True
        return self.image_layer

    def hold(self) -> None:
        """Ignore the layer's events until the next :meth:`show` rebuilds it."""
        self._updating = True

    def owns_image(self) -> bool:
        """Whether the image shown is our own layer (none shown counts as ours)."""
        return self.image_layer is None or self._own_image_layer

    def adopt_image(self, layer: Any) -> None:
        """Lay the boxes over a layer of the user's (kept when the dock moves on)."""
        self.image_layer = layer
        self._own_image_layer = False

    def show(self, image: str, boxes: list[Any], size: tuple[int, int] | None) -> Any:
        """(Re)build the Shapes layer for ``image``'s boxes, over the image layer if any.

        The layer already shown is refilled in place (see :meth:`show_image` for why). A new
        or refilled layer is shown a turn after its data changed: napari's first paint of new
        boxes (their meshes, the captions' glyphs; for a new layer its 13 shader programs) then
        gets a turn of its own (compute: one 135 ms stall -> 84-88 ms; next image 64 -> 44-48;
        a layer the user hid stays hidden)."""
        data, kwargs, _ = image_layer_data(image, boxes, size)
        image_layer = self.image_layer
        if image_layer is not None:
            kwargs["scale"] = tuple(image_layer.scale[-2:])
            kwargs["translate"] = tuple(image_layer.translate[-2:])
        self._updating = True
        try:
            layer = self.layer
            if layer is not None and layer in self.viewer.layers and layer.ndim == 2:
                if layer.visible:  # refilled hidden, shown a turn later (as a new layer)
                    layer.visible = False
                    show_next_turn(self.viewer, layer)
                _refill(layer, data, kwargs)
                _refresh_status(self.viewer)
            else:
                self.disconnect()
                if layer is not None and layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
                from napari.layers import Shapes

                layer = add_in_turns(self.viewer, Shapes(data, ndim=2, **kwargs), mode="select")
                layer.events.data.connect(self._on_data)
                layer.events.features.connect(self._on_features)
            self.layer = layer
        finally:
            self._updating = False
        return layer

    def remove(self) -> None:
        """Stop listening; take the Shapes layer (and our own image layer) out of the viewer."""
        self.disconnect()
        for layer, own in ((self.layer, True), (self.image_layer, self._own_image_layer)):
            if layer is not None and own and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layer = None
        self.image_layer = None
        self._own_image_layer = False

    def disconnect(self) -> None:
        layer = self.layer
        if layer is None:
            return
        for emitter, cb in ((layer.events.data, self._on_data),
                            (layer.events.features, self._on_features)):
            try:
                emitter.disconnect(cb)
            except (TypeError, RuntimeError, ValueError):
                pass

    def _on_data(self, event: Any) -> None:
        if self._updating:
            return
        action = str(getattr(event, "action", ""))
        if action == "adding":
            self._n_before = self.layer.nshapes
            return
        if action not in ("added", "changed", "removed"):
            return
        if action == "added":
            self._mark_new_shapes(self._n_before)
        self._on_edit()

    def _on_features(self, event: Any = None) -> None:
        if not self._updating:
            self._on_edit()

    def _mark_new_shapes(self, first: int) -> None:
        """Shapes the user added are user boxes (napari copies the selected shape's features)."""
        layer = self.layer
        n = layer.nshapes
        if first >= n:
            return
        df = layer.features.copy()
        for col, value in DEFAULT_FEATURES.items():
            if col in df.columns:
                df.loc[first:n - 1, col] = value
        self._updating = True
        try:
            layer.features = df
            layer.refresh_text()
        finally:
            self._updating = False


def _refresh_status(viewer: Any) -> None:
    """Rewrite napari's status bar (layer name and value under the cursor): napari writes it
    only when the mouse moves, so a layer refilled in place showed the previous image's name."""
    try:
        viewer.update_status_from_cursor()
    except Exception:  # noqa: BLE001 - a status line is a display nicety, never fatal
        pass


def _same_kind(layer: Any, data: Any) -> bool:
    """Whether image layer ``layer`` can show ``data``: grey stays grey, colour stays colour,
    and the dtype is the same (so the contrast range still fits)."""
    shape = getattr(data, "shape", ())
    rgb = len(shape) == 3 and shape[-1] in (3, 4)
    return layer.ndim == len(shape) - (1 if rgb else 0) and bool(layer.rgb) == rgb and \
        (not rgb or layer.data.shape[-1] == shape[-1]) and \
        getattr(layer.data, "dtype", None) == getattr(data, "dtype", None)


def _refill(layer: Any, data: list[Any], kwargs: dict[str, Any]) -> None:
    """Put another image's rectangles, features, colours and names into a Shapes layer."""
    layer.selected_data = set()
    layer.data = []
    layer.scale, layer.translate = kwargs.get("scale", (1, 1)), kwargs.get("translate", (0, 0))
    if data:
        layer.add_rectangles(data, edge_color=kwargs["edge_color"],
                             face_color=kwargs["face_color"], edge_width=kwargs["edge_width"])
    layer.features = kwargs["features"]
    layer.feature_defaults = kwargs["feature_defaults"]
    layer.refresh_text()
    layer.metadata = kwargs["metadata"]
    layer.name = kwargs["name"]
