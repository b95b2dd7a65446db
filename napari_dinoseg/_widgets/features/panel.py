"""The features dock: pick a backbone and weights, compute attention / mask / PCA layers.

The shared pieces come from :mod:`..common`: the model fields (:class:`~.fields.ModelFields`),
the image combo (:class:`~.layer_picking.ImageLayerPicker`) and the worker with its busy state
and error line (:class:`~.workers.WorkerSlot`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.common.fields import ModelFields
from napari_dinoseg._widgets.common.layer_picking import ImageLayerPicker
from napari_dinoseg._widgets.common.models import ModelCache, load_backbone_for_dock
from napari_dinoseg._widgets.common.warmup import warm_up_later
from napari_dinoseg._widgets.common.workers import WorkerSlot
from napari_dinoseg._widgets.features.outputs import foreground_options

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
        warm_up_later("labels")  # the attention mask's Labels layer imports, off the GUI thread
        self._backbones = ModelCache(load_backbone_for_dock)
        self._jobs = WorkerSlot(on_busy=lambda busy: self.run_button.setEnabled(not busy),
                                on_status=lambda text: self.status.setText(text))

        self.images = ImageLayerPicker(self.viewer)
        self.image_combo = self.images.combo
        self.model_fields = ModelFields(
            self, list_backbones(), "dinov2_vits14", devices=DEVICES,
            weights_tip="'official' (cache / download), 'random' (untrained) or a checkpoint file")
        self.backbone_combo = self.model_fields.name_combo
        self.weights_edit = self.model_fields.weights_edit
        self.device_combo = self.model_fields.device_combo
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 4096)
        self.size_spin.setSingleStep(14)
        self.size_spin.setSpecialValueText("native")
        self.size_spin.setToolTip("resize so the longer side is this many pixels (0 = native)")
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
        self.fg_combo = QComboBox()
        self.fg_combo.addItems(["off", "fused", "pca", "attention"])
        self.fg_combo.setToolTip("foreground mask: fused (features + colour in 2 clusters), "
                                 "first PCA component or CLS attention (Otsu threshold)")
        self.fg_crf_check = QCheckBox("CRF")
        self.fg_crf_check.setToolTip("refine the foreground with the dense CRF")
        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(0, 32)
        self.clusters_spin.setSpecialValueText("off")
        self.clusters_spin.setToolTip("k-means clusters of the dense features (0 = off)")
        self.colour_spin = QDoubleSpinBox()
        self.colour_spin.setRange(0.0, 10.0)
        self.colour_spin.setSingleStep(0.25)
        self.colour_spin.setToolTip("weight of the colour term (cos h, sin h, s, v); 0 = off")
        self.position_spin = QDoubleSpinBox()
        self.position_spin.setRange(0.0, 10.0)
        self.position_spin.setSingleStep(0.25)
        self.position_spin.setToolTip("weight of the position term (row, column); 0 = off")
        self.fg_only_check = QCheckBox("foreground only")
        self.fg_only_check.setToolTip("cluster only the foreground pixels (needs a foreground)")
        self.run_button = QPushButton("Compute")
        self.run_button.clicked.connect(self.run)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(80)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        self.model_fields.add_rows(form, device=False)
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
        fg_row = QHBoxLayout()
        fg_row.addWidget(self.fg_combo)
        fg_row.addWidget(self.fg_crf_check)
        form.addRow("foreground", fg_row)
        cl_row = QHBoxLayout()
        cl_row.addWidget(self.clusters_spin)
        cl_row.addWidget(QLabel("colour"))
        cl_row.addWidget(self.colour_spin)
        cl_row.addWidget(QLabel("position"))
        cl_row.addWidget(self.position_spin)
        form.addRow("clusters", cl_row)
        form.addRow("", self.fg_only_check)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def _worker(self) -> Any:
        return self._jobs.worker

    def _refresh_images(self, event: Any = None) -> None:
        self.images.refresh()

    def backbone_key(self) -> tuple[str, str, str]:
        return self.model_fields.key()

    def backbone(self, key: tuple[str, str, str] | None = None) -> Any:
        """The chosen backbone, loaded once per (name, weights, device) for this dock."""
        return self._backbones.get(key or self.backbone_key())

    # -- action -------------------------------------------------------------------------------
    def run(self) -> None:
        """Compute the views of the current slice of the chosen image in a worker."""
        from napari.utils.notifications import show_error

        from napari_dinoseg._widgets.common.layers import current_slice, slice_label

        try:
            layer = self.images.layer(
                "Open an image first (File > Open, or File > Open Sample > DINO seg).")
        except ValueError as exc:
            show_error(str(exc))
            return
        if (self.fg_only_check.isChecked() and self.clusters_spin.value()
                and self.fg_combo.currentText() == "off"):
            show_error("Clustering the foreground only needs a foreground method.")
            return
        name = layer.name
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
        opts.update(foreground_options(
            self.fg_combo.currentText(), self.fg_crf_check.isChecked(), self.clusters_spin.value(),
            self.colour_spin.value(), self.position_spin.value(), self.fg_only_check.isChecked()))
        key = self.backbone_key()
        self.status.setText("computing…")

        def compute():
            from headless.features.views import feature_views

            backbone = self.backbone(key)  # loading runs in the worker too
            views = yield from feature_views(backbone, image, **opts)
            return views, backbone.name

        def show(result: Any) -> None:
            views, bb = result
            self.add_layers(layer, views, bb, label)

        self._jobs.start(compute(), show, f"DINO features of {name}")

    def add_layers(self, image_layer: Any, views: Any, backbone: str, label: str = "") -> None:
        """Add or refresh the output layers, laid exactly over ``image_layer``.

        One layer per turn of the event loop (:func:`~.qt_helpers.in_steps`; inline in sync
        mode): a new napari layer costs the GUI thread ~120 ms here, and the four to six views
        in one callback froze the viewer for 0.5-0.8 s. The status line comes with the last.
        """
        from napari_dinoseg._widgets.common.layers import provenance_text
        from napari_dinoseg._widgets.common.qt_helpers import in_steps

        specs = self.layer_specs(image_layer, views, backbone, label)
        added: list[Any] = []

        def add(spec: Any) -> Any:
            def step() -> None:
                if image_layer in self.viewer.layers:  # the user may close it in between
                    added.append(self._add(spec))
            return step

        def status() -> None:
            if not added:
                return
            gh, gw = views.attn_mean.shape
            text = f"{provenance_text(added[0].metadata)}; grid {gh}x{gw}"
            if views.foreground is not None:
                text += f"; foreground {100 * views.foreground.mask.mean():.0f} % of the image"
            if views.notes:
                text += "\n" + "\n".join(views.notes)
            self.status.setText(text)

        in_steps(self.viewer, *(add(spec) for spec in specs), status)

    @staticmethod
    def layer_specs(image_layer: Any, views: Any, backbone: str, label: str = "") -> list[Any]:
        """The output layers of ``views`` (:func:`~.outputs.output_layers`), laid exactly over
        ``image_layer`` (its scale, translation and width in world units)."""
        from napari_dinoseg._widgets.features.outputs import output_layers

        base_scale = tuple(image_layer.scale[-2:])
        shape = image_layer.level_shapes[0]
        width = (shape[-2] if image_layer.rgb else shape[-1]) * base_scale[1]
        return output_layers(views, image_layer.name, backbone, label, base_scale,
                             tuple(image_layer.translate[-2:]), image_width=width)

    def _add(self, spec: Any) -> Any:
        from napari_dinoseg._widgets.common.layers import add_or_update

        return add_or_update(self.viewer, spec.kind, spec.data, spec.name, select=False,
                             **spec.kwargs)
