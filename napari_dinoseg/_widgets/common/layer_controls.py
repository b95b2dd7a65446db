"""napari's controls panel of a new layer, made on a later turn of the event loop.

napari makes a layer's controls (its opacity slider, colormap and blending combos, the mode
buttons) as the layer is inserted, 14-32 ms of the 58-85 ms an insert costs here. They are only
seen once the layer is selected: :func:`insert_with_controls_later` inserts the layer without
them and gives the step that makes them on a later turn, with napari's own method.
Should napari look them up before that (the layer selected, or removed, meanwhile), they are
made at that moment: napari keeps them in a dict, which here makes a pending layer's controls
when napari first asks for them (napari calls its plugins' handlers after its own, so a handler
of ours could not make them in time).

Reaches napari's private controls container (``window._qt_viewer._controls``); with another
napari, or when the container does not exist yet, the layer is inserted as napari does.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any


class ControlsOnDemand(dict):
    """napari's ``layer -> controls`` dict that makes a pending layer's controls when napari
    looks them up (a KeyError for any other missing layer, as napari's dict)."""

    def __init__(self, container: Any, entries: dict) -> None:
        super().__init__(entries)
        self._container = weakref.ref(container)
        self.pending: weakref.WeakSet = weakref.WeakSet()

    def __missing__(self, layer: Any) -> Any:
        if self._container() is None or layer not in self.pending:
            raise KeyError(layer)
        self.make(layer)
        return dict.__getitem__(self, layer)

    def make(self, layer: Any, only_in: Any = None) -> None:
        """napari's controls of ``layer`` if still pending (once), and (with ``only_in``) if
        the layer is still in that layer list."""
        if layer not in self.pending:
            return
        self.pending.discard(layer)
        container = self._container()
        if container is not None and layer not in self and (only_in is None or layer in only_in):
            container._add(SimpleNamespace(value=layer))  # napari's own method


def _container(viewer: Any) -> Any:
    """napari's layer controls container of ``viewer``, or None (not made yet, another napari,
    or napari's "dynamic layer controls" setting, which makes them on selection anyway)."""
    from napari_dinoseg._widgets.common.qt_helpers import qt_viewer

    try:
        container = getattr(qt_viewer(viewer), "_controls", None)  # (the property makes it)
        if container is None or not hasattr(container, "_add") or not isinstance(
                getattr(container, "widgets", None), dict):
            return None
        from napari.settings import get_settings

        if getattr(get_settings().experimental, "dynamic_layer_controls", False):
            return None
        return container
    except Exception:  # noqa: BLE001 - another napari or a plain ViewerModel: napari's way
        return None


def insert_with_controls_later(viewer: Any, layer: Any) -> Callable[[], None] | None:
    """Append ``layer`` to ``viewer.layers`` without napari's controls; the step that makes
    them (on a later turn; nothing if napari asked for them meanwhile or the layer is gone),
    or None when napari made them as usual."""
    container = _container(viewer)
    layers = viewer.layers
    if container is None:
        layers.append(layer)
        return None
    widgets = container.widgets
    if not isinstance(widgets, ControlsOnDemand):
        widgets = container.widgets = ControlsOnDemand(container, widgets)
    widgets.pending.add(layer)
    try:
        with layers.events.inserted.blocker(container._add):
            layers.append(layer)
    except BaseException:
        widgets.pending.discard(layer)
        raise
    return partial(widgets.make, layer, layers)
