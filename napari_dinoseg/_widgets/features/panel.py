"""The features dock: pick a backbone and weights, compute attention / mask / PCA layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import (
    ModelCache,
    browse_checkpoint,
    load_backbone_for_dock,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

DEVICES = ("auto", "cpu", "cuda")


class FeaturesWidget(QWidget):
    """Attention maps (mean, per head), DINO's mask and PCA-RGB as layers over the image."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from headless.features.backbones import list_backbones
        from headless.features.views import MODES

        self.viewer = napari_viewer
        self._backbones = ModelCache(load_backbone_for_dock)
        self._worker: Any = None

        self.image_combo = QComboBox()
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(list_backbones())
        self.backbone_combo.setCurrentText("dinov2_vits14")
        self.weights_edit = QLineEdit("official")
        self.weights_edit.setToolTip(
            "'official' (cache / download), 'random' (untrained) or a checkpoint file")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse_weights)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit)
        weights_row.addWidget(browse)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 4096)
        self.size_spin.setSingleStep(14)
        self.size_spin.setSpecialValueText("native")
        self.size_spin.setToolTip("resize so the longer side is this many pixels (0 = native)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.keep_spin = QDoubleSpinBox()
        self.keep_spin.setRange(0.05, 1.0)
        self.keep_spin.setSingleStep(0.05)
        self.keep_spin.setValue(0.6)
        self.fg_check = QCheckBox("fit PCA on foreground only")
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        self.mode_combo.setToolTip("patch: grid maps only; other modes add a full-resolution PCA")
        self.shifts_combo = QComboBox()
        self.shifts_combo.addItems(["4", "8"])
        self.flips_check = QCheckBox("flips")
        self.run_button = QPushButton("Compute")
        self.run_button.clicked.connect(self.run)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(80)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("backbone", self.backbone_combo)
        form.addRow("weights", weights_row)
        form.addRow("input size", self.size_spin)
        form.addRow("device", self.device_combo)
        form.addRow("attention kept", self.keep_spin)
        form.addRow("", self.fg_check)
        form.addRow("dense mode", self.mode_combo)
        hr_row = QHBoxLayout()
        hr_row.addWidget(QLabel("shifts"))
        hr_row.addWidget(self.shifts_combo)
        hr_row.addWidget(self.flips_check)
        form.addRow("HR-Dv2", hr_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()

    # -- helpers ------------------------------------------------------------------------------
    def _refresh_images(self, event: Any = None) -> None:
        from napari.layers import Image

        current = self.image_combo.currentText()
        names = [
            ly.name for ly in self.viewer.layers
            if isinstance(ly, Image) and not ly.metadata.get("dinoseg_output")
        ]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    def _browse_weights(self) -> None:
        path = browse_checkpoint(self)
        if path:
            self.weights_edit.setText(path)

    def backbone_key(self) -> tuple[str, str, str]:
        return (self.backbone_combo.currentText(), self.weights_edit.text().strip() or "official",
                self.device_combo.currentText())

    def backbone(self, key: tuple[str, str, str] | None = None) -> Any:
        """The chosen backbone, loaded once per (name, weights, device) for this dock."""
        return self._backbones.get(key or self.backbone_key())

    # -- action -------------------------------------------------------------------------------
    def run(self) -> None:
        """Compute the views of the current slice of the chosen image in a worker."""
        from napari.utils.notifications import show_error

        from napari_dinoseg._widgets.common.layers import current_slice, slice_label
        from napari_dinoseg._widgets.common.workers import start

        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            show_error("Open an image first (File > Open, or File > Open Sample > DINO seg).")
            return
        layer = self.viewer.layers[name]
        image = current_slice(layer, self.viewer)
        label = slice_label(layer, self.viewer)
        opts = {
            "size": self.size_spin.value() or None,
            "keep": self.keep_spin.value(),
            "pca_foreground": self.fg_check.isChecked(),
            "mode": self.mode_combo.currentText(),
            "dense_options": {"shifts": int(self.shifts_combo.currentText()),
                              "flips": self.flips_check.isChecked()},
        }
        if opts["mode"] == "patch":
            opts["dense_options"] = None
        key = self.backbone_key()
        self.run_button.setEnabled(False)
        self.status.setText("computing…")

        def compute():
            from headless.features.views import feature_views

            backbone = self.backbone(key)  # loading runs in the worker too
            views = yield from feature_views(backbone, image, **opts)
            return views, backbone.name

        def show(result: Any) -> None:
            views, bb = result
            self.add_layers(layer, views, f"{bb}{label}")

        def failed(exc: BaseException) -> None:
            self.status.setText(f"error: {exc}")

        self._worker = start(compute(), show, f"DINO features of {name}", on_error=failed,
                             on_finish=lambda: self.run_button.setEnabled(True))

    def add_layers(self, image_layer: Any, views: Any, tag: str) -> None:
        """Add or refresh the output layers, laid exactly over ``image_layer``."""
        from napari_dinoseg._widgets.common.layers import add_or_update

        base_scale = tuple(image_layer.scale[-2:])
        base_tr = tuple(image_layer.translate[-2:])
        scale = (views.scale[0] * base_scale[0], views.scale[1] * base_scale[1])
        translate = (base_tr[0] + views.translate[0] * base_scale[0],
                     base_tr[1] + views.translate[1] * base_scale[1])
        meta = {"dinoseg_output": True, "weights": views.weights_label, "mode": views.mode}
        prefix = f"{image_layer.name} {tag}"
        random_note = " (random weights)" if views.weights_label.startswith("random") else ""
        add_or_update(self.viewer, "image", views.attn_mean,
                      f"{prefix} attention mean{random_note}",
                      scale=scale, translate=translate, colormap="inferno", opacity=0.6,
                      blending="additive", metadata=meta)
        add_or_update(self.viewer, "image", views.attn_heads,
                      f"{prefix} attention heads{random_note}",
                      scale=(1.0, *scale), translate=(0.0, *translate), colormap="inferno",
                      opacity=0.6, blending="additive", visible=False, metadata=meta)
        add_or_update(self.viewer, "labels", views.mask, f"{prefix} attention mask{random_note}",
                      scale=scale, translate=translate, opacity=0.4, metadata=meta)
        add_or_update(self.viewer, "image", views.pca, f"{prefix} PCA{random_note}", rgb=True,
                      scale=scale, translate=translate, opacity=0.7,
                      visible=views.dense_pca is None,
                      metadata=meta)
        if views.dense_pca is not None:
            dense_note = "" if views.mode == "classical" else random_note  # classical: no weights
            add_or_update(self.viewer, "image", views.dense_pca,
                          f"{prefix} PCA {views.mode}{dense_note}", rgb=True, scale=base_scale,
                          translate=base_tr, opacity=0.7, metadata=meta)
        gh, gw = views.attn_mean.shape
        text = f"{tag}: {views.weights_label}; grid {gh}x{gw}"
        if views.notes:
            text += "\n" + "\n".join(views.notes)
        self.status.setText(text)
