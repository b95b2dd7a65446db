"""Choosing a layer in a dock: combos filled from the viewer's layers, kept in sync.

Every dock had its own copy of "list the Image layers that are not our outputs, refill the combo,
keep the current choice": :func:`fill_combo` and :func:`image_layer_names` are that copy, and
:func:`watch_layers` calls a dock back when a layer is added, removed or renamed (a renamed
choice stays chosen under its new name). :class:`ImageLayerPicker` is the image combo itself;
:func:`active_image_layer` and :func:`source_path` are the image a dock takes when none is chosen
and the file it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QComboBox

#: metadata flag of the layers the docks add (attention maps, PCA…): never offered as inputs
OUTPUT_FLAG = "dinoseg_output"


def fill_combo(combo: QComboBox, names: Sequence[str], prefer_last: bool = False,
               renamed: dict[str, str] | None = None) -> None:
    """Refill ``combo`` with ``names``, keeping the current choice when it is still there.

    ``renamed`` (old -> new name) follows a chosen layer that was renamed; ``prefer_last``
    picks the newest layer when the choice is gone. No signals fire while refilling.
    """
    current = combo.currentText()
    if renamed and current in renamed:
        current = renamed[current]
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(list(names))
    if current in names:
        combo.setCurrentText(current)
    elif prefer_last and names:
        combo.setCurrentIndex(len(names) - 1)
    combo.blockSignals(False)


def image_layer_names(viewer: Any) -> list[str]:
    """Names of the viewer's Image layers that are inputs (not outputs of a dock)."""
    from napari.layers import Image

    return [ly.name for ly in viewer.layers
            if isinstance(ly, Image) and not ly.metadata.get(OUTPUT_FLAG)]


class LayerWatch:
    """Calls ``callback(renamed)`` when a layer of ``viewer`` is added, removed or renamed.

    ``renamed`` maps old -> new names after a rename (empty otherwise), for :func:`fill_combo`.
    """

    def __init__(self, viewer: Any, callback: Callable[[dict[str, str]], None]) -> None:
        self.viewer = viewer
        self._callback = callback
        self._names: dict[int, str] = {}
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        for layer in viewer.layers:
            self._follow(layer)

    def _follow(self, layer: Any) -> None:
        self._names[id(layer)] = layer.name
        layer.events.name.connect(self._on_renamed)

    def _on_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            self._follow(layer)
        self._callback({})

    def _on_removed(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            self._names.pop(id(layer), None)
            try:
                layer.events.name.disconnect(self._on_renamed)
            except (TypeError, RuntimeError, ValueError):
                pass
        self._callback({})

    def _on_renamed(self, event: Any) -> None:
        layer = getattr(event, "source", None)
        if layer is None:
            return
        old = self._names.get(id(layer))
        self._names[id(layer)] = layer.name
        self._callback({old: layer.name} if old and old != layer.name else {})


def watch_layers(viewer: Any, callback: Callable[[dict[str, str]], None]) -> LayerWatch:
    """Call ``callback(renamed)`` on every layer insert, remove and rename of ``viewer``."""
    return LayerWatch(viewer, callback)


class ImageLayerPicker:
    """The image combo of a dock: the viewer's input Image layers, always up to date.

    With ``watch=False`` the dock calls :meth:`refresh` itself (from its own
    :func:`watch_layers`, when it keeps more combos in sync).
    """

    def __init__(self, viewer: Any, combo: QComboBox | None = None, watch: bool = True) -> None:
        self.viewer = viewer
        self.combo = combo if combo is not None else QComboBox()
        self._watch = watch_layers(viewer, self.refresh) if watch else None
        self.refresh()

    def refresh(self, renamed: dict[str, str] | None = None) -> None:
        fill_combo(self.combo, image_layer_names(self.viewer), renamed=renamed)

    def name(self) -> str:
        return self.combo.currentText()

    def layer(self, message: str = "Open an image first.") -> Any:
        """The chosen layer; ``ValueError(message)`` when none is chosen (or it is gone)."""
        name = self.combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError(message)
        return self.viewer.layers[name]


def active_image_layer(viewer: Any) -> Any:
    """The selected Image layer, else the first Image layer of ``viewer`` (None if none)."""
    from napari.layers import Image

    active = viewer.layers.selection.active
    if isinstance(active, Image):
        return active
    return next((ly for ly in viewer.layers if isinstance(ly, Image)), None)


def source_path(layer: Any) -> Path | None:
    """The file a layer was opened from (None for layers made in memory)."""
    src = getattr(getattr(layer, "source", None), "path", None)
    return Path(src) if src else None
