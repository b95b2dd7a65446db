"""The dock's user work in the image's project folder: what is autosaved after each change,
and how saved work comes back as layers when the image is opened again.

A mixin of :class:`.panel.SegmentWidget` (it uses the panel's ``viewer``, ``controller``,
``autosaver``, ``status`` and its layer helpers); the files themselves are :mod:`.autosave`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_dinoseg._widgets.common.selection import select_for_painting
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
        """Bring back the saved scribbles, class names, segmentation and probe of the image.

        The files are read (and the probe loaded) in a worker; the layers are added when they
        arrive, so opening a dock over an image with saved work never freezes the viewer.
        Returns whether there is saved work to restore (inline in sync mode: whether it was).
        """
        from napari_dinoseg._widgets.common.workers import start

        ctx, img = self.project(), self.image_layer()
        if ctx is None or img is None:
            return False
        saved = SavedWork(*ctx)
        if not saved.folder.is_dir():
            return False
        shape = self.spatial_shape(img)
        want_probe = self.probe is None
        self.status.setText(f"restoring saved work from {saved.folder}…")
        done: list[bool] = []

        def apply(parts: dict[str, Any]) -> None:
            done.append(self._apply_saved(img.name, saved, parts))

        start(_read_saved(saved, shape, want_probe), apply, "restoring saved work")
        return done[0] if done else True  # threaded: the layers come when read

    def _apply_saved(self, image_name: str, saved: SavedWork, parts: dict[str, Any]) -> bool:
        """Add the layers of work read by :func:`_read_saved` (GUI thread), one layer per turn
        of the event loop (:func:`in_steps`); returns whether anything was restored (known at
        once in sync mode, else True: the steps follow)."""
        from napari_dinoseg._widgets.common.qt_helpers import in_steps
        from napari_dinoseg._widgets.common.workers import sync_mode

        if image_name not in self.viewer.layers:
            return False  # the image was closed meanwhile
        restored: list[str] = []
        why: list[str] = []
        if self.controller.restore_classes(parts.get("classes")):
            self._fill_class_table()

        def scribbles() -> None:
            img = self.viewer.layers[image_name] if image_name in self.viewer.layers else None
            data, scr_name = parts.get("scribbles"), f"{image_name} scribbles"
            if img is None or data is None or scr_name in self.viewer.layers:
                return
            layer = seg_layers.add_scribble_layer(self.viewer, img, data, scr_name)
            seg_layers.set_label_features(layer, self.controller.label_features())
            self._refresh_layers()
            self.scribble_combo.setCurrentText(scr_name)
            self._listen(layer)
            restored.append("scribbles")

        def brush() -> None:  # paint mode (napari's brush cursor), a turn after the layer
            scr_name = f"{image_name} scribbles"
            if "scribbles" in restored and scr_name in self.viewer.layers:
                present = parts.get("present") or []  # the classes in use
                select_for_painting(self.viewer, self.viewer.layers[scr_name],
                                    present[0] if present else self.controller.first_class())

        def segmentation() -> None:
            img = self.viewer.layers[image_name] if image_name in self.viewer.layers else None
            seg, seg_name = parts.get("segmentation"), f"{image_name} segmentation"
            if img is not None and seg is not None and seg_name not in self.viewer.layers:
                seg_layers.add_saved_segmentation(self.viewer, img, seg, seg_name)
                restored.append("segmentation")

        def probe_and_status() -> None:
            probe, reason = parts.get("probe", (None, ""))
            if self.probe is None:
                if probe is not None:
                    self._adopt_probe(probe)
                    restored.append("probe")
                elif reason:
                    why.append(reason)
                    self.status.setText(f"saved probe not restored: {reason}")
            if restored:
                note = saved.store.where_note() if hasattr(saved.store, "where_note") else None
                self.status.setText(f"restored {', '.join(restored)} from {saved.folder}"
                                    + (f" ({note})" if note else ""))
            elif not why:
                self.status.setText(
                    "Choose an image, add a scribble layer and paint two classes.")

        in_steps(self.viewer, scribbles, brush, segmentation, probe_and_status)
        return bool(restored) or not sync_mode()


def _read_saved(saved: SavedWork, shape: tuple[int, ...], want_probe: bool) -> Any:
    """Read what was saved for an image (a worker's job): files, the probe, the values in use."""
    from headless.progress import Progress

    yield Progress(0, 3, "classes and scribbles")
    parts: dict[str, Any] = {"classes": saved.classes(), "scribbles": saved.scribbles(shape)}
    if parts["scribbles"] is not None:
        values = np.unique(parts["scribbles"])
        parts["present"] = [int(v) for v in values if v > 0]
    yield Progress(1, 3, "segmentation")
    parts["segmentation"] = saved.segmentation(shape)
    yield Progress(2, 3, "probe")
    parts["probe"] = saved.probe() if want_probe else (None, "")
    return parts
