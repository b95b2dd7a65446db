"""The dock's user work in the image's project folder: what is autosaved after each change,
and how saved work comes back as layers when the image is opened again.

A mixin of :class:`.panel.SegmentWidget` (it uses the panel's ``viewer``, ``controller``,
``autosaver``, ``status`` and its layer helpers); the files themselves are :mod:`.autosave`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_dinoseg._widgets.segment import layers as seg_layers
from napari_dinoseg._widgets.segment.autosave import SavedWork, project_for


class ProjectWork:
    """Autosave and restore for the scribble dock."""

    def project(self) -> tuple[Any, str] | None:
        """(ProjectStore, image file name) of the chosen image, or None if it has no file."""
        return project_for(self.image_layer())

    def _autosave(self, scribbles: bool = False, segmentation: bool = False,
                  probe: bool = False, classes: bool = False) -> None:
        error = self.autosaver.take_error()
        if error:
            from napari.utils.notifications import show_warning

            show_warning(error)
            self.status.setText(error)
        if not self.autosave_check.isChecked():
            return
        ctx = self.project()
        if ctx is None:
            return
        parts: dict[str, Any] = {}
        scr = self.scribble_layer()
        if (scribbles or classes) and scr is not None and \
                tuple(scr.data.shape) == self.spatial_shape():
            if scribbles:
                parts["scribbles"] = np.array(scr.data, copy=True)
            parts["classes"] = self.controller.classes_json()
        if segmentation:
            seg_name = f"{self.image_layer().name} segmentation"
            if seg_name in self.viewer.layers:
                parts["segmentation"] = np.array(self.viewer.layers[seg_name].data)
        if probe and self.probe is not None:
            parts["probe"] = self.probe
        self.autosaver.save(*ctx, **parts)

    def flush_saves(self, timeout: float = 30.0) -> None:
        """Wait for pending autosaves (tests, and before closing)."""
        self.autosaver.flush(timeout)

    def restore(self) -> bool:
        """Bring back the saved scribbles, class names, segmentation and probe of the image."""
        ctx, img = self.project(), self.image_layer()
        if ctx is None or img is None:
            return False
        saved = SavedWork(*ctx)
        shape = self.spatial_shape(img)
        restored = []
        if self.controller.restore_classes(saved.classes()):
            self._fill_class_table()
        scr_name = f"{img.name} scribbles"
        scribbles = saved.scribbles(shape)
        if scribbles is not None and scr_name not in self.viewer.layers:
            layer = seg_layers.add_scribble_layer(self.viewer, img, scribbles, scr_name)
            seg_layers.set_label_features(layer, self.controller.label_features())
            self._refresh_layers()
            self.scribble_combo.setCurrentText(scr_name)
            self._listen(layer)
            restored.append("scribbles")
        seg_name = f"{img.name} segmentation"
        seg = saved.segmentation(shape)
        if seg is not None and seg_name not in self.viewer.layers:
            seg_layers.add_saved_segmentation(self.viewer, img, seg, seg_name)
            restored.append("segmentation")
        if self.probe is None:
            probe, why = saved.probe()
            if probe is not None:
                self._adopt_probe(probe)
                restored.append("probe")
            elif why:
                self.status.setText(f"saved probe not restored: {why}")
        if restored:
            self.status.setText(f"restored {', '.join(restored)} from {saved.folder}")
        return bool(restored)
