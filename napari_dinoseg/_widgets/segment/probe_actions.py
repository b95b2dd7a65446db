"""What the dock does with a probe: apply it to the stack or a folder, save it, load and adopt it.

A mixin of :class:`.panel.SegmentWidget`, kept apart because these are one-shot actions with
file dialogs, while the panel proper follows strokes. It uses the panel's ``viewer``,
``controller``, ``status``, ``_worker`` and ``_start`` and its field helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog

from napari_dinoseg._widgets.segment.controller import needs_feature_switch, switch_message

BUSY = "A segmentation is running; try again when it has finished."


class ProbeActions:
    """Apply-to-stack, apply-to-folder and probe files, for the scribble dock."""

    def _require_probe(self) -> bool:
        from napari.utils.notifications import show_error

        if self.probe is None:
            show_error("No probe yet: paint scribbles of two classes (or load a probe) first.")
            return False
        return True

    def _segmenter_for_probe(self) -> Any:
        """A segmenter for the probe, or None (with a message) when the features differ."""
        from napari.utils.notifications import show_error

        segmenter = self._segmenter()
        why = self.controller.probe_mismatch(segmenter)
        if why is not None:
            show_error(why)
            self.status.setText(why)
            return None
        return segmenter

    def apply_to_stack(self) -> None:
        """Segment every slice of the chosen image with the current probe (in a worker)."""
        from napari.utils.notifications import show_error

        img = self.image_layer()
        if img is None:
            show_error("Choose an image first.")
            return
        if not self._require_probe():
            return
        lead = len(self.spatial_shape(img)) - 2
        n_slices = int(np.prod(self.spatial_shape(img)[:lead])) if lead else 1
        segmenter = self._segmenter_for_probe()
        if segmenter is None:
            return
        generation = self.controller.next_generation()
        job = self.controller.stack_job(segmenter, img.data, lead, self.probe, generation,
                                        img.name)
        if self._worker is not None:
            show_error(BUSY)
            return
        self.status.setText(f"applying the probe to {n_slices} slice(s)…")
        self._start(job, self._show_result, f"apply probe to {img.name}")

    def apply_to_folder(self, folder: str | Path | None = None, out_dir: str | Path | None = None
                        ) -> None:
        """Segment every image of ``folder`` with the probe, writing label TIFFs to ``out_dir``."""
        from napari.utils.notifications import show_error, show_info

        from headless.segment.workflow import apply_to_all

        if not self._require_probe():
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Folder of images to segment")
            if not folder:
                return
        folder = Path(folder)
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(
                self, "Output folder for label TIFFs", str(folder))
            if not out_dir:
                return
        out_dir = Path(out_dir)
        segmenter = self._segmenter_for_probe()
        if segmenter is None:
            return
        if self._worker is not None:
            show_error(BUSY)
            return
        gen = apply_to_all(segmenter, self.probe, [folder], out_dir,
                           save_proba=self.probs_check.isChecked())

        def done(result: Any) -> None:
            self.controller.remember_backbone(segmenter)
            self.last_apply = result
            text = f"wrote {len(result.written)} label file(s) to {out_dir}"
            if result.skipped:
                text += "; skipped " + "; ".join(f"{n}: {why}" for n, why in result.skipped)
            self.status.setText(text)
            show_info(text)

        self.status.setText(f"applying the probe to {folder}…")
        self._start(gen, done, f"apply probe to {folder.name}")

    def save_probe(self, path: str | Path | None = None) -> Path | None:
        from napari.utils.notifications import show_error, show_info

        if not self._require_probe():
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save probe", "probe.npz",
                                                  "Probe (*.npz)")
            if not path:
                return None
        try:
            out = self.probe.save(path)
        except OSError as exc:
            show_error(f"could not save the probe: {exc}")
            return None
        show_info(f"saved probe {out}")
        return out

    def load_probe(self, path: str | Path | None = None) -> Any:
        """Load a probe and switch the feature controls to the features it was trained on."""
        from napari.utils.notifications import show_error, show_info

        from headless.segment.probe import ProbeError
        from headless.segment.probe import load_probe as _load

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load probe", "", "Probe (*.npz)")
            if not path:
                return None
        try:
            probe = _load(path)
        except ProbeError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return None
        self._adopt_probe(probe)
        show_info(f"loaded {probe.kind} probe trained on {probe.meta.feature_mode} features"
                  + (f" of {probe.meta.backbone}" if probe.meta.backbone else ""))
        return probe

    def _adopt_probe(self, probe: Any) -> None:
        """Switch the feature and classifier fields to those ``probe`` was trained with."""
        m = probe.meta
        if needs_feature_switch(probe, self.feature_spec()):
            self.set_features(m.feature_mode, m.backbone)
            self.status.setText(switch_message(probe))
        opts = m.feature_options
        if "shifts" in opts:
            self.shifts_combo.setCurrentText(str(opts["shifts"]))
        if "flips" in opts:
            self.flips_check.setChecked(bool(opts["flips"]))
        self.classifier_combo.setCurrentIndex(self.classifier_combo.findData(probe.kind))
        self.controller.adopt_probe(probe)
        self._fill_class_table()
