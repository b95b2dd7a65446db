"""The model fields every dock shows: model name, weights (with a file picker) and device.

One builder instead of four copies, so the docks agree on what "weights" accepts ('official',
'random' or a checkpoint file), on the device choices and on the cache key their models are
loaded under (``(name, weights, device)``, see :class:`~.qt_helpers.ModelCache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QPushButton, QWidget

from napari_dinoseg._widgets.common.qt_helpers import browse_checkpoint

#: Devices offered by every dock; "auto" picks CUDA when present (headless.resolve_device).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

WEIGHTS_TIP = ("'official' (cache folder, downloaded when online), 'random' (untrained, for "
               "trying the pipeline) or a local checkpoint file")


class ModelFields:
    """Name / weights / device widgets for one model, added to a form by :meth:`add_rows`.

    ``weights`` is an editable combo ('official', 'random', or any typed or browsed path);
    ``weights_edit`` is its line edit, for code that sets text directly. ``devices`` narrows
    the device choices for a dock that offers fewer (its default stays ``device``).
    """

    def __init__(
        self,
        parent: QWidget,
        names: Sequence[str],
        default: str,
        *,
        name_tip: str = "",
        weights_tip: str = WEIGHTS_TIP,
        device: str = "auto",
        title: str = "Checkpoint",
        devices: Sequence[str] = DEVICES,
        kind: str = "backbone",
    ) -> None:
        from headless.downloads import set_audience

        set_audience("dock")  # missing-weights messages speak of fields, not flags
        self.kind = kind
        self._parent = parent
        self._title = title
        self.name_combo = QComboBox()
        self.name_combo.addItems(list(names))
        self.name_combo.setCurrentText(default)
        if name_tip:
            self.name_combo.setToolTip(name_tip)
        self.weights = QComboBox()
        self.weights.setEditable(True)
        self.weights.addItems(["official", "random"])
        self.weights.setToolTip(weights_tip)
        self.weights_edit = self.weights.lineEdit()
        self.browse_button = QPushButton("…")
        self.browse_button.setMaximumWidth(30)
        self.browse_button.setToolTip("choose a local checkpoint file")
        self.browse_button.clicked.connect(self.browse)
        self.weights_row = QHBoxLayout()
        self.weights_row.addWidget(self.weights, 1)
        self.weights_row.addWidget(self.browse_button)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(devices))
        self.device_combo.setCurrentText(device)

    def add_rows(self, form: QFormLayout, name_label: str = "backbone",
                 weights_label: str = "weights", device: bool = True) -> None:
        form.addRow(name_label, self.name_combo)
        form.addRow(weights_label, self.weights_row)
        if device:
            form.addRow("device", self.device_combo)

    def browse(self) -> None:
        path = browse_checkpoint(self._parent, self._title)
        if path:
            self.weights.setCurrentText(path)

    def key(self) -> tuple[str, str, str]:
        """``(name, weights, device)``: the cache key a dock loads the model under."""
        return (self.name_combo.currentText(),
                self.weights.currentText().strip() or "official",
                self.device_combo.currentText())

    def set(self, name: str | None = None, weights: str | None = None,
            device: str | None = None) -> None:
        if name is not None:
            self.name_combo.setCurrentText(name)
        if weights is not None:
            self.weights.setCurrentText(weights)
        if device is not None:
            self.device_combo.setCurrentText(device)

    def widgets(self) -> list[Any]:
        return [self.name_combo, self.weights, self.browse_button, self.device_combo]
