"""The classifier job's fields (seed 000): ImageFolder and boxes, model and crop, optimisation.

A mixin of the Train panel: the widgets stay attributes of the panel (``panel.data_edit``,
``panel.lr_spin``...), laid out in one page per dock section like the other jobs' pages
(:mod:`.job_fields`), and :meth:`ClassifierFields._classifier_form` reads them as a
:class:`~.controller.TrainForm`.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import hrow
from napari_dinoseg._widgets.train.controller import (
    CROPS,
    RESNET_MODELS,
    VIT_MODELS,
    WEIGHT_CHOICES,
    TrainForm,
)


def _float_box(value: float, lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _int_box(value: int, lo: int, hi: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    return box


def _page() -> tuple[QWidget, QFormLayout]:
    page = QWidget()
    form = QFormLayout(page)
    form.setContentsMargins(0, 0, 0, 0)
    return page, form


class ClassifierFields:
    """Builds the classifier's widgets on the panel; ``self.classifier_pages`` by section."""

    def _build_classifier(self) -> dict[str, QWidget]:
        # -- data --
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("ImageFolder: one sub-folder of images per class")
        data_btn = QPushButton("…")
        data_btn.clicked.connect(self._choose_data)
        self.boxes_edit = QLineEdit()
        self.boxes_edit.setPlaceholderText("exported boxes (COCO .json, VOC, .csv); optional")
        boxes_btn = QPushButton("…")
        boxes_btn.clicked.connect(self._choose_boxes)
        self.size_spin = _int_box(224, 14, 4096)
        self.batch_spin = _int_box(32, 1, 4096)
        self.val_spin = _float_box(0.2, 0.0, 0.9, 0.05, 2)
        self.workers_spin = _int_box(4, 0, 64)
        data_page, form = _page()
        form.addRow("dataset folder", hrow(self.data_edit, data_btn))
        form.addRow("boxes file", hrow(self.boxes_edit, boxes_btn))
        form.addRow("image size", self.size_spin)
        form.addRow("batch size", self.batch_spin)
        form.addRow("validation share", self.val_spin)
        form.addRow("loader workers", self.workers_spin)

        # -- model --
        self.model_combo = QComboBox()
        self.model_combo.addItems([*RESNET_MODELS, *VIT_MODELS])
        self.weights_combo = QComboBox()
        self.weights_combo.setEditable(True)
        self.weights_combo.addItems(list(WEIGHT_CHOICES))
        self.weights_combo.setToolTip("empty: random for ResNets, official for ViTs; 'imagenet' "
                                      "(ResNet), 'official' (ViT), or a checkpoint file")
        self.freeze_check = QCheckBox("freeze backbone (linear head only)")
        self.cls_check = QCheckBox("train only the CLS token (ViT)")
        self.crop_combo = QComboBox()
        for label, key in CROPS:
            self.crop_combo.addItem(label, key)
        self.thr_spin = _float_box(1.0, 0.0, 1.0, 0.05, 2)
        self.temp_spin = _float_box(1.0, 0.01, 100.0, 0.1, 2)
        model_page, form = _page()
        form.addRow("model", self.model_combo)
        form.addRow("weights", self.weights_combo)
        form.addRow(self.freeze_check)
        form.addRow(self.cls_check)
        form.addRow("crop", self.crop_combo)
        form.addRow("crop thr", self.thr_spin)
        form.addRow("attention T", self.temp_spin)

        # -- optimisation --
        self.opt_combo = QComboBox()
        self.opt_combo.addItems(["sgd", "adam", "adamw"])
        self.lr_spin = _float_box(0.1, 1e-6, 10.0, 0.01, 6)
        self.sched_combo = QComboBox()
        self.sched_combo.addItems(["cosine", "step", "constant"])
        self.target_spin = _float_box(0.0, 0.0, 10.0, 0.0001, 6)
        self.epochs_spin = _int_box(10, 1, 100000)
        self.smooth_spin = _float_box(0.1, 0.0, 0.9, 0.05, 2)
        self.ema_spin = _int_box(0, 0, 100000)
        self.ema_spin.setToolTip("update an EMA of the weights every k steps (0: no EMA)")
        self.augment_check = QCheckBox("colour augmentations")
        self.augment_check.setChecked(True)
        self.augment_p_spin = _float_box(0.5, 0.0, 1.0, 0.05, 2)
        self.augmix_check = QCheckBox("AugMix")
        self.seed_spin = _int_box(0, 0, 2**31 - 1)
        self.log_spin = _int_box(10, 1, 100000)
        self.log_spin.setToolTip("log loss / accuracy every N steps (the curves' resolution)")
        opt_page, form = _page()
        form.addRow("optimizer", self.opt_combo)
        form.addRow("learning rate", self.lr_spin)
        form.addRow("schedule", self.sched_combo)
        form.addRow("target lr", self.target_spin)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("label smoothing", self.smooth_spin)
        form.addRow("EMA every k steps", self.ema_spin)
        form.addRow(hrow(self.augment_check, QLabel("p"), self.augment_p_spin,
                         self.augmix_check))
        form.addRow("seed", self.seed_spin)
        form.addRow("log every (steps)", self.log_spin)
        self.classifier_pages = {"data": data_page, "model": model_page, "opt": opt_page}
        return self.classifier_pages

    def _classifier_form(self, device: str, name: str) -> TrainForm:
        """The classifier's fields as plain values."""
        return TrainForm(
            data_root=self.data_edit.text(), boxes=self.boxes_edit.text(),
            image_size=self.size_spin.value(), batch_size=self.batch_spin.value(),
            val_fraction=self.val_spin.value(), num_workers=self.workers_spin.value(),
            job="classifier", model=self.model_combo.currentText(),
            weights=self.weights_combo.currentText(),
            freeze_backbone=self.freeze_check.isChecked(), train_cls=self.cls_check.isChecked(),
            crop=self.crop_combo.currentData(), crop_thr=self.thr_spin.value(),
            temperature=self.temp_spin.value(), optimizer=self.opt_combo.currentText(),
            lr=self.lr_spin.value(), scheduler=self.sched_combo.currentText(),
            target_lr=self.target_spin.value(), num_epochs=self.epochs_spin.value(),
            label_smoothing=self.smooth_spin.value(), ema_step=self.ema_spin.value(),
            augment=self.augment_check.isChecked(), augment_p=self.augment_p_spin.value(),
            augmix=self.augmix_check.isChecked(), seed=self.seed_spin.value(),
            log_interval=self.log_spin.value(), device=device, name=name,
        )

    def _choose_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder (one sub-folder per class)")
        if folder:
            self.data_edit.setText(folder)

    def _choose_boxes(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Exported boxes", "", "Boxes (*.json *.csv *.xml);;All files (*)")
        if path:
            self.boxes_edit.setText(path)
            if self.crop_combo.currentData() == "random_resized":
                self.crop_combo.setCurrentIndex(self.crop_combo.findData("localized"))
