"""The boxes dock's compute settings: method, features, backbone / weights / device, input size.

:class:`BoxSettings` builds the form rows and reads them back as plain values
(:meth:`~BoxSettings.options`, :meth:`~BoxSettings.key`) for the controller.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QSpinBox, QWidget

from napari_dinoseg._widgets.boxes.controller import compute_options
from napari_dinoseg._widgets.common.fields import ModelFields

#: the boxes dock's devices; cpu first, its default (the boxes of one image are quick on CPU)
DEVICES = ("cpu", "cuda", "mps")
WEIGHTS_TIP = ("'official' (hub cache / local checkpoint), 'random' (untrained, for testing) "
               "or a checkpoint file")


class BoxSettings:
    """The form of the settings a box computation uses."""

    def __init__(self, parent: QWidget) -> None:
        from headless.boxes.compute import METHOD_TITLES, METHODS
        from headless.features.backbones import list_backbones

        self.method_combo = QComboBox()
        for m in METHODS:
            self.method_combo.addItem(METHOD_TITLES.get(m, m), m)
        self.which_combo = QComboBox()
        self.which_combo.addItems(["auto", "k", "q", "v", "patch"])
        self.which_combo.setToolTip(
            "auto: per backbone family (DINO: the papers' last-block keys; DINOv2: centred "
            "patch tokens); or the last block's keys, queries, values, or the output tokens")
        self.model_fields = ModelFields(parent, list_backbones(), "dino_vits16", device="cpu",
                                        devices=DEVICES, weights_tip=WEIGHTS_TIP)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 4096)
        self.size_spin.setSingleStep(16)
        self.size_spin.setSpecialValueText("original")
        self.size_spin.setToolTip("resize so the longer side is this many pixels (0 = original "
                                  "size, as the papers' VOC evaluation); boxes always refer to "
                                  "the original image")
        self.overwrite_check = QCheckBox("replace edited / verified boxes")
        self.overwrite_check.setToolTip("off: images whose boxes you edited keep them (the "
                                        "safe default); on: recompute them too (the previous "
                                        "version is kept in boxes.previous.json)")
        self.form = QFormLayout()
        self.form.addRow("method", self.method_combo)
        self.form.addRow("features", self.which_combo)
        self.model_fields.add_rows(self.form, device=False)
        self.form.addRow("input size", self.size_spin)
        self.form.addRow("device", self.model_fields.device_combo)
        self.form.addRow("", self.overwrite_check)

    def options(self) -> dict[str, Any]:
        """Method, features and input size (None = original size)."""
        return compute_options(self.method_combo.currentData(), self.which_combo.currentText(),
                               self.size_spin.value())

    def key(self) -> tuple[str, str, str]:
        """``(backbone, weights, device)``: the backbone cache key."""
        return self.model_fields.key()

    @property
    def overwrite(self) -> bool:
        return self.overwrite_check.isChecked()
