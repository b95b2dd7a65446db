"""A job's own fields in the Train dock, built from a short table instead of by hand.

Each job (:mod:`.fgvc_fields`, :mod:`.dino_fields`) lists its fields as :class:`Field` rows:
the plain form's attribute (:mod:`.job_forms`), the label, and which of the dock's sections
("data", "model", "opt") holds it. :class:`JobFields` makes one page per section (a spin box for
an int default, a check box for a bool, a combo for choices, a line edit with a browse button
for a path), reads them back as the job's plain form and shows or hides its pages together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import hrow

SECTIONS = ("data", "model", "opt")
INT_MAX = 2**31 - 1
COMBO_CHARS = 14  # the least a combo shows, in characters
ADJUST_TO_MIN_LENGTH = QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon


@dataclass(frozen=True)
class Field:
    """One field of a job's form: ``name`` is the plain form's attribute."""

    name: str
    label: str
    section: str = "opt"
    choices: Sequence[str | tuple[str, str]] = ()  # a combo: values, or (label, value)
    editable: bool = False  # a combo one can type in (a backbone name, a file)
    browse: str = ""  # "folder" or "file": a line edit with a "…" button
    lo: float = 0
    hi: float | None = None
    step: float = 1.0
    decimals: int = 2
    special: str = ""  # the spin box's text at its minimum ("auto", "off")
    tip: str = ""
    placeholder: str = ""


def _page() -> tuple[QWidget, QFormLayout]:
    page = QWidget()
    form = QFormLayout(page)
    form.setContentsMargins(0, 0, 0, 0)
    return page, form


class JobFields:
    """The fields of one job, in one page per dock section; :meth:`form` reads them."""

    def __init__(self, job: str, form_type: type, fields: Sequence[Field]) -> None:
        self.job = job
        self.form_type = form_type
        self.fields = {f.name: f for f in fields}
        self.widgets: dict[str, QWidget] = {}
        self.pages: dict[str, QWidget] = {}
        forms: dict[str, QFormLayout] = {}
        for section in SECTIONS:
            self.pages[section], forms[section] = _page()
        defaults = form_type()
        for f in fields:
            widget, row = self._make(f, getattr(defaults, f.name))
            if f.tip:
                widget.setToolTip(f.tip)
            self.widgets[f.name] = widget
            if isinstance(widget, QCheckBox):
                forms[f.section].addRow(row)
            else:
                forms[f.section].addRow(f.label, row)
        for section, page in self.pages.items():
            page.setObjectName(f"{job}_{section}")

    # -- widgets -------------------------------------------------------------------------------
    def _make(self, f: Field, default: Any) -> tuple[QWidget, QWidget]:
        if isinstance(default, bool):
            box = QCheckBox(f.label)
            box.setChecked(default)
            return box, box
        if f.choices:
            combo = QComboBox()
            combo.setEditable(f.editable)
            # as narrow as a short choice: a long one must not widen the dock (its popup shows
            # it whole)
            combo.setSizeAdjustPolicy(ADJUST_TO_MIN_LENGTH)
            combo.setMinimumContentsLength(COMBO_CHARS)
            for choice in f.choices:
                label, value = choice if isinstance(choice, tuple) else (choice, choice)
                combo.addItem(label, value)
            self._set(combo, default)
            return combo, combo
        if isinstance(default, int):
            spin = QSpinBox()
            spin.setRange(int(f.lo), int(f.hi if f.hi is not None else INT_MAX))
            spin.setSingleStep(int(f.step))
            spin.setSpecialValueText(f.special)
            spin.setValue(default)
            return spin, spin
        if isinstance(default, float):
            dspin = QDoubleSpinBox()
            dspin.setDecimals(f.decimals)
            dspin.setRange(f.lo, f.hi if f.hi is not None else 1e6)
            dspin.setSingleStep(f.step)
            dspin.setSpecialValueText(f.special)
            dspin.setValue(default)
            return dspin, dspin
        edit = QLineEdit(str(default))
        edit.setPlaceholderText(f.placeholder)
        if not f.browse:
            return edit, edit
        button = QPushButton("…")
        button.clicked.connect(lambda: self._browse(f, edit))
        return edit, hrow((edit, 1), button)

    def _browse(self, f: Field, edit: QLineEdit) -> None:
        parent = self.pages[f.section]
        if f.browse == "folder":
            path = QFileDialog.getExistingDirectory(parent, f.label)
        else:
            path, _ = QFileDialog.getOpenFileName(parent, f.label)
        if path:
            edit.setText(path)

    @staticmethod
    def _get(widget: QWidget) -> Any:
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QComboBox):
            i = widget.currentIndex()
            if widget.isEditable() or i < 0 or widget.itemText(i) != widget.currentText():
                return widget.currentText()
            data = widget.itemData(i)
            return widget.currentText() if data is None else data
        if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            return widget.value()
        return widget.text()

    @staticmethod
    def _set(widget: QWidget, value: Any) -> None:
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QComboBox):
            i = widget.findData(value)
            if i < 0:
                i = widget.findText(str(value))
            if i >= 0:
                widget.setCurrentIndex(i)
            elif widget.isEditable():
                widget.setCurrentText(str(value))
            else:
                raise ValueError(f"{value!r} is not one of the choices")
        elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            widget.setValue(value)
        else:
            widget.setText(str(value))

    # -- the form ------------------------------------------------------------------------------
    def form(self, **common: Any) -> Any:
        """The job's plain form from the widgets; ``common``: device and name (the Run box)."""
        values = {name: self._get(w) for name, w in self.widgets.items()}
        return self.form_type(**values, **common)

    def set_values(self, **values: Any) -> None:
        """Set fields by their form names (``pretext="/data/x", num_epochs=1``)."""
        for name, value in values.items():
            if name not in self.widgets:
                raise KeyError(f"{self.job} has no field {name!r}")
            self._set(self.widgets[name], value)

    def set_visible(self, visible: bool) -> None:
        for page in self.pages.values():
            page.setVisible(visible)

    def labels(self) -> list[str]:
        return [f.label for f in self.fields.values()]


def form_field_names(form_type: type) -> set[str]:
    """The plain form's fields the dock sets (all but the Run box's and the job name)."""
    return {f.name for f in dataclasses.fields(form_type)} - {"job", "device", "name"}
