"""The SAM dock: Segment Anything masks as Labels layers, masks from boxes, boxes from masks.

Every action runs the engine's generators (:mod:`headless.sam`) in a worker with a napari
progress bar (``DINOSEG_SYNC=1`` runs them inline, for tests); failures become notifications.
Outputs are always *new* layers (napari numbers repeated names), so re-running never
overwrites a layer the user has edited; "boxes from masks" appends to a chosen boxes layer.
This module is the Qt side (fields, layer combos, output layers); the models, the jobs and the
layer metadata are in :mod:`.controller`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QWidget,
)

from napari_dinoseg._widgets.common.fields import ModelFields
from napari_dinoseg._widgets.common.layer_picking import (
    ImageLayerPicker,
    fill_combo,
    source_path,
    watch_layers,
)
from napari_dinoseg._widgets.common.layers import (
    PROVENANCE_KEY,
    add_in_turns,
    add_labels,
    provenance_text,
)
from napari_dinoseg._widgets.common.qt_helpers import float_spin, int_spin
from napari_dinoseg._widgets.common.scrolling import collapsible, scroll_layout
from napari_dinoseg._widgets.common.selection import keep_selection
from napari_dinoseg._widgets.common.warmup import warm_up_glyphs_later, warm_up_later
from napari_dinoseg._widgets.common.workers import WorkerSlot
from napari_dinoseg._widgets.sam.batch_job import attach_sam_job
from napari_dinoseg._widgets.sam.controller import (
    META_KEY,
    NEW_LAYER,
    SamController,
    appended_features,
    auto_params,
    chosen_metadata,
    empty_masks_hint,
    image_hw,
    label_scores,
    mask_features,
    masks_metadata,
    model_key,
    output_layer_metadata,
    output_layer_name,
    params_dict,
    source_image,
    to_image_pixels,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["DEVICES", "META_KEY", "NEW_LAYER", "SamWidget", "mask_features"]

DEVICES = ("auto", "cpu", "cuda")
SAM_WEIGHTS_TIP = ("'official' (cache folder, downloaded when online), 'random' (untrained) or "
                   "a checkpoint file")


class SamWidget(QWidget):
    """Segment Anything next to the DINO outputs: automatic masks, one mask per box, boxes."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from headless.features.backbones import list_backbones
        from headless.sam import AutoMaskParams, list_sam_models

        self.viewer = napari_viewer
        self.controller = SamController()
        warm_up_later("labels")  # the first masks layer's imports, off the GUI thread
        warm_up_glyphs_later(self.viewer)  # its captions' glyphs, a few per turn
        self._jobs = WorkerSlot(on_busy=self._set_busy, on_status=self._say)
        d = AutoMaskParams()

        # -- model ---------------------------------------------------------------------------
        self.images = ImageLayerPicker(self.viewer, watch=False)  # see _refresh_layers
        self.image_combo = self.images.combo
        self.sam_fields = ModelFields(
            self, list_sam_models(include_test=True), "vit_b", devices=DEVICES,
            title="SAM checkpoint", weights_tip=SAM_WEIGHTS_TIP, kind="sam",
            name_tip="vit_b / vit_l / vit_h: Meta's checkpoints; test_sam_tiny: a tiny "
                     "architecture for tests")
        self.model_combo = self.sam_fields.name_combo
        self.weights_edit = self.sam_fields.weights_edit
        self.device_combo = self.sam_fields.device_combo
        self.cache_check = QCheckBox("cache embeddings in the image's project folder")
        self.cache_check.setChecked(True)
        form = QFormLayout()
        form.addRow("image", self.image_combo)
        self.sam_fields.add_rows(form, "SAM model")
        form.addRow("", self.cache_check)

        # -- automatic -----------------------------------------------------------------------
        auto = QGroupBox("Automatic masks")
        af = QFormLayout(auto)
        self.points_spin = int_spin(1, 256, d.points_per_side)
        self.points_spin.setToolTip("points per side of the prompt grid (points_per_side)")
        self.batch_spin = int_spin(1, 1024, d.points_per_batch)
        self.iou_spin = float_spin(0.0, 1.0, 0.01, d.pred_iou_thresh)
        self.iou_spin.setToolTip("drop masks whose predicted IoU is not above this")
        self.stab_spin = float_spin(0.0, 1.0, 0.01, d.stability_score_thresh)
        self.stab_spin.setToolTip("drop masks less stable than this under a ±1 logit cut")
        self.nms_spin = float_spin(0.0, 1.0, 0.05, d.box_nms_thresh)
        self.nms_spin.setToolTip("box IoU above which duplicate masks are suppressed")
        self.area_spin = int_spin(0, 10**7, d.min_mask_region_area)
        self.area_spin.setToolTip("fill holes / remove islands smaller than this (pixels)")
        self.crops_spin = int_spin(0, 3, d.crop_n_layers)
        self.crops_spin.setToolTip("also run on 4, 16, … overlapping crops (one encoder pass each)")
        af.addRow("points per side", self.points_spin)
        af.addRow("points per batch", self.batch_spin)
        af.addRow("predicted IoU ≥", self.iou_spin)
        af.addRow("stability ≥", self.stab_spin)
        af.addRow("box NMS IoU", self.nms_spin)
        af.addRow("min region area", self.area_spin)
        af.addRow("crop layers", self.crops_spin)
        self.auto_button = QPushButton("Automatic masks")
        self.auto_button.clicked.connect(self.automatic)
        af.addRow(self.auto_button)

        # -- boxes <-> masks -----------------------------------------------------------------
        bm = QGroupBox("Boxes and masks")
        bf = QFormLayout(bm)
        self.shapes_combo = QComboBox()
        self.shapes_combo.setToolTip("Shapes layer whose rectangles become masks")
        self.masks_button = QPushButton("Masks from boxes")
        self.masks_button.clicked.connect(self.masks_from_boxes)
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Labels layer (one label per mask) to turn into boxes")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("boxes layer that receives the boxes (appended)")
        self.boxes_button = QPushButton("Boxes from masks")
        self.boxes_button.clicked.connect(self.boxes_from_masks)
        bf.addRow("boxes layer", self.shapes_combo)
        bf.addRow(self.masks_button)
        bf.addRow("masks layer", self.labels_combo)
        bf.addRow("boxes into", self.target_combo)
        bf.addRow(self.boxes_button)

        # -- one mask per image --------------------------------------------------------------
        one = QGroupBox("One mask per image (pseudo ground truth)")
        of = QFormLayout(one)
        self.bb_fields = ModelFields(self, list_backbones(), "dino_vits16", devices=DEVICES)
        self._jobs.weights_fields = [self.sam_fields, self.bb_fields]
        self.backbone_combo = self.bb_fields.name_combo
        self.bb_weights_edit = self.bb_fields.weights_edit
        self.keep_spin = float_spin(0.05, 1.0, 0.05, 0.6)
        self.keep_spin.setToolTip("attention mass kept by DINO's threshold")
        self.choose_button = QPushButton("Choose mask by DINO attention")
        self.choose_button.setToolTip(
            "the mask (label of the masks layer) with the highest IoU with the thresholded DINO "
            "attention; ties: highest mean attention inside"
        )
        self.choose_button.clicked.connect(self.choose_by_attention)
        self.bb_fields.add_rows(of, "DINO backbone", "its weights", device=False)
        of.addRow("attention kept", self.keep_spin)
        of.addRow(self.choose_button)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = scroll_layout(self)
        layout.addLayout(form)
        for group in (auto, bm, one):
            layout.addWidget(collapsible(group))
        layout.addWidget(attach_sam_job(self))  # automatic masks of the folder, as a job
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._buttons = (self.auto_button, self.masks_button, self.boxes_button,
                         self.choose_button)
        self._watch = watch_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    # -- state the tests and scripts read ----------------------------------------------------
    @property
    def last_result(self) -> Any:
        """The last MaskSet / list of boxes / MaskChoice."""
        return self.controller.last_result

    @last_result.setter
    def last_result(self, value: Any) -> None:
        self.controller.last_result = value

    @property
    def _worker(self) -> Any:
        return self._jobs.worker

    # -- layer lists --------------------------------------------------------------------------
    def _refresh_layers(self, renamed: dict[str, str] | None = None) -> None:
        from napari.layers import Labels, Shapes

        layers = list(self.viewer.layers)
        self.images.refresh(renamed)
        shapes = [ly.name for ly in layers if isinstance(ly, Shapes)]
        fill_combo(self.shapes_combo, shapes, prefer_last=True, renamed=renamed)
        fill_combo(self.labels_combo, [ly.name for ly in layers if isinstance(ly, Labels)],
                   prefer_last=True, renamed=renamed)
        fill_combo(self.target_combo, [NEW_LAYER, *shapes], renamed=renamed)

    def model_key(self) -> tuple[str, str, str]:
        return self.sam_fields.key()

    def backbone_key(self) -> tuple[str, str, str]:
        """The DINO backbone's key; it runs on the SAM model's device."""
        name, weights, _ = self.bb_fields.key()
        return model_key(name, weights, self.device_combo.currentText())

    def sam_model(self, key: tuple[str, str, str] | None = None) -> Any:
        """The chosen SAM, loaded once per (model, weights, device) for this dock."""
        return self.controller.sam_model(key or self.model_key())

    def auto_params(self) -> Any:
        return auto_params(
            self.points_spin.value(), self.batch_spin.value(), self.iou_spin.value(),
            self.stab_spin.value(), self.nms_spin.value(), self.crops_spin.value(),
            self.area_spin.value())

    def _image_layer(self) -> Any:
        return self.images.layer("Open an image first (File > Open, or File > Open Sample).")

    def _store(self, layer: Any) -> Any:
        """The project folder next to the image file, for the embedding cache (or None)."""
        return self.controller.store_for(source_path(layer), self.cache_check.isChecked())

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self._say(f"error: {message}")
        show_error(message)

    def _set_busy(self, busy: bool) -> None:
        for b in self._buttons:
            b.setEnabled(not busy)

    def _run(self, gen: Any, on_result: Any, description: str) -> None:
        self._say(f"{description}…")
        self._jobs.start(gen, on_result, description)

    # -- actions ------------------------------------------------------------------------------
    def automatic(self) -> None:
        """Automatic SAM masks of the current slice of the chosen image -> a Labels layer."""
        from napari_dinoseg._widgets.common.layers import current_slice, slice_label

        try:
            layer = self._image_layer()
            params = self.auto_params()
            params.validate()
            image = current_slice(layer, self.viewer)
        except ValueError as exc:
            self._error(str(exc))
            return
        key, store, tag = self.model_key(), self._store(layer), slice_label(layer, self.viewer)

        def show(result: Any) -> None:
            ms, sam, parts = result
            if ms.n == 0:  # no empty layer; say which filters and what to try
                self._error(empty_masks_hint(params, sam.is_random))
                return
            new = self._add_masks(layer, ms, sam, "SAM masks", tag,
                                  {"params": params_dict(params)}, parts)
            self.labels_combo.setCurrentText(new.name)  # the next step works on these

        self._run(self.controller.automatic_job(key, image, params, store), show,
                  f"SAM automatic masks of {layer.name}")

    def masks_from_boxes(self) -> None:
        """One SAM mask per rectangle of the chosen Shapes layer -> a Labels layer."""
        from napari_dinoseg._widgets.boxes.layers import layer_to_boxes
        from napari_dinoseg._widgets.common.layers import current_slice, slice_label

        try:
            layer = self._image_layer()
            name = self.shapes_combo.currentText()
            if not name or name not in self.viewer.layers:
                raise ValueError("Choose a Shapes layer holding boxes (draw rectangles first).")
            shapes = self.viewer.layers[name]
            if shapes.ndim != 2:
                raise ValueError(f"'{name}' is a {shapes.ndim}D Shapes layer; masks from boxes "
                                 "needs the 2D boxes of one image")
            boxes = to_image_pixels(layer_to_boxes(shapes), shapes, layer)
            image = current_slice(layer, self.viewer)
        except ValueError as exc:
            self._error(str(exc))
            return
        if not boxes:
            self._error(f"'{name}' holds no boxes: draw rectangles, or compute boxes first.")
            return
        key, store, tag = self.model_key(), self._store(layer), slice_label(layer, self.viewer)

        def show(result: Any) -> None:
            from napari.utils.notifications import show_warning

            ms, sam, parts = result
            new = self._add_masks(layer, ms, sam, "SAM box masks", tag, {"boxes_layer": name},
                                  parts)
            self.labels_combo.setCurrentText(new.name)
            if ms.empty_prompts:
                show_warning(f"{len(ms.empty_prompts)} box(es) of '{name}' lie outside the "
                             "image; their masks are empty")

        self._run(self.controller.boxes_job(key, image, boxes, store), show,
                  f"SAM masks from the boxes of {name}")

    def boxes_from_masks(self) -> None:
        """Tight boxes of every label of the chosen Labels layer -> appended to a boxes layer."""
        name = self.labels_combo.currentText()
        if not name or name not in self.viewer.layers:
            self._error("Choose a Labels layer of masks (run SAM first).")
            return
        labels_layer = self.viewer.layers[name]
        data = np.asarray(labels_layer.data)
        if data.ndim != 2:
            self._error(f"'{name}' is {data.ndim}D; boxes from masks needs a 2D labels layer")
            return
        scores = label_scores(labels_layer.features)

        def show(boxes: Any) -> None:
            self.last_result = boxes
            target = self._put_boxes(boxes, labels_layer, "mask boxes")
            self._say(f"{len(boxes)} box(es) from '{name}' -> '{target.name}'")

        self._run(self.controller.tight_boxes_job(data, scores), show,
                  f"boxes from the masks of {name}")

    def choose_by_attention(self) -> None:
        """Seed 000's rule without a classifier: the label best matching DINO's attention."""
        from napari_dinoseg._widgets.common.layers import current_slice

        try:
            layer = self._image_layer()
            name = self.labels_combo.currentText()
            if not name or name not in self.viewer.layers:
                raise ValueError("Choose a Labels layer of masks (run SAM first).")
            labels_layer = self.viewer.layers[name]
            data = np.asarray(labels_layer.data)
            image = current_slice(layer, self.viewer)
            if data.shape != image_hw(image):
                raise ValueError(f"'{name}' has shape {data.shape}, the image {image_hw(image)}")
            if not (data > 0).any():
                raise ValueError(f"'{name}' holds no masks")
        except ValueError as exc:
            self._error(str(exc))
            return

        def show(result: Any) -> None:
            choice, value, bb = result
            self.last_result = choice
            labels_layer.selected_label = value
            labels_layer.metadata = {**labels_layer.metadata,
                                     **chosen_metadata(choice, value, bb)}
            target = self._put_boxes([choice.box], labels_layer, "pseudo GT")
            self._say(
                f"chosen label {value} (IoU {choice.scores[choice.index]:.2f} with the "
                f"thresholded attention of {bb.name}, {bb.weights_label}) -> '{target.name}'"
            )

        job = self.controller.choose_job(self.backbone_key(), image, data, self.keep_spin.value())
        self._run(job, show, f"one mask of {name} by DINO attention")

    # -- outputs ------------------------------------------------------------------------------
    def _add_masks(self, image_layer: Any, ms: Any, sam: Any, kind: str, tag: str,
                   extra: dict[str, Any], parts: dict[str, Any] | None = None) -> Any:
        """A masks Labels layer named 'kind · image'; image, model and weights in its metadata.

        ``parts``: the labels image and features the job computed (else computed here)."""
        self.last_result = ms
        parts = parts or {"labels": ms.labels(), "features": mask_features(ms)}
        image = f"{image_layer.name}{tag}"
        meta = {**output_layer_metadata(kind, image, model=f"SAM {sam.name}",
                                        weights=sam.weights_label),
                **masks_metadata(ms, sam, extra)}
        with keep_selection(self.viewer):
            layer = add_labels(
                self.viewer, parts["labels"], select=False,
                name=output_layer_name(kind, image_layer.name, tag, sam.is_random),
                features=parts["features"], scale=tuple(image_layer.scale[-2:]),
                translate=tuple(image_layer.translate[-2:]), opacity=0.5, metadata=meta)
        self._say(f"{ms.n} mask(s) -> '{layer.name}' ({provenance_text(meta)})")
        return layer

    def _put_boxes(self, boxes: list[Any], source_layer: Any, kind: str) -> Any:
        """Append boxes to the chosen boxes layer, or add a new one ('kind · image')."""
        from napari_dinoseg._widgets.boxes.layers import box_to_rectangle, shapes_kwargs

        target = self.target_combo.currentText()
        scale = tuple(source_layer.scale[-2:])
        translate = tuple(source_layer.translate[-2:])
        if target and target != NEW_LAYER and target in self.viewer.layers:
            layer = self.viewer.layers[target]
            if layer.ndim == 2 and boxes:
                n0 = len(layer.data)
                layer.add_rectangles([box_to_rectangle(b) for b in boxes],
                                     edge_color="#7cff7c", face_color="transparent")
                layer.features = appended_features(layer.features.iloc[:n0], boxes)
                return layer
            if layer.ndim != 2:
                self._error(f"'{target}' is not a 2D boxes layer; added a new layer instead")
        image = source_image(source_layer)
        info = source_layer.metadata.get(PROVENANCE_KEY, {})
        meta = {"images": [image], "sizes": {}, "classes": ["object"]}
        kwargs = shapes_kwargs(boxes, output_layer_name(kind, image), meta)
        provenance = output_layer_metadata(kind, image, **{
            k: v for k, v in info.items() if k not in ("kind", "image")})[PROVENANCE_KEY]
        kwargs["metadata"][PROVENANCE_KEY] = provenance  # boxes stay usable as inputs
        from napari.layers import Shapes

        return add_in_turns(self.viewer, Shapes([box_to_rectangle(b) for b in boxes], ndim=2,
                                                scale=scale, translate=translate, **kwargs),
                            select=False)
