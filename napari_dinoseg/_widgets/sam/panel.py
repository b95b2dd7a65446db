"""The SAM dock: Segment Anything masks as Labels layers, masks from boxes, boxes from masks.

Every action runs the engine's generators (:mod:`headless.sam`) in a worker with a napari
progress bar (``DINOSEG_SYNC=1`` runs them inline, for tests); failures become notifications.
Outputs are always *new* layers (napari numbers repeated names), so re-running never
overwrites a layer the user has edited; "boxes from masks" appends to a chosen boxes layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_dinoseg._widgets.common.qt_helpers import (
    ModelCache,
    browse_checkpoint,
    float_spin,
    int_spin,
    load_backbone_for_dock,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

DEVICES = ("auto", "cpu", "cuda")
NEW_LAYER = "(new layer)"
META_KEY = "dinoseg_sam"


def mask_features(ms: Any) -> dict[str, Any]:
    """Labels-layer features of a MaskSet: one row per label value, row 0 = background."""
    t = ms.table()
    nan = np.array([np.nan])
    return {
        "index": np.concatenate([[0], t["label"]]).astype(np.int64),
        "predicted_iou": np.concatenate([nan, t["predicted_iou"]]),
        "stability_score": np.concatenate([nan, t["stability_score"]]),
        "area": np.concatenate([[0], t["area"]]).astype(np.int64),
        "class": ["background", *ms.classes],
    }


class SamWidget(QWidget):
    """Segment Anything next to the DINO outputs: automatic masks, one mask per box, boxes."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from headless.features.backbones import list_backbones
        from headless.sam import AutoMaskParams, list_sam_models

        self.viewer = napari_viewer
        self._models = ModelCache(_load_sam)
        self._backbones = ModelCache(load_backbone_for_dock)
        self._worker: Any = None
        self.last_result: Any = None  # last MaskSet / list of boxes / MaskChoice (for scripts)
        d = AutoMaskParams()

        # -- model ---------------------------------------------------------------------------
        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.model_combo.addItems(list_sam_models(include_test=True))
        self.model_combo.setCurrentText("vit_b")
        self.model_combo.setToolTip("vit_b / vit_l / vit_h: Meta's checkpoints; test_sam_tiny: "
                                    "a tiny architecture for tests")
        self.weights_edit = QLineEdit("official")
        self.weights_edit.setToolTip("'official' (cache folder, downloaded when online), "
                                     "'random' (untrained) or a checkpoint file")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse_weights)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit)
        weights_row.addWidget(browse)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.cache_check = QCheckBox("cache embeddings in the image's project folder")
        self.cache_check.setChecked(True)
        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("SAM model", self.model_combo)
        form.addRow("weights", weights_row)
        form.addRow("device", self.device_combo)
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
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(list_backbones())
        self.backbone_combo.setCurrentText("dino_vits16")
        self.bb_weights_edit = QLineEdit("official")
        self.keep_spin = float_spin(0.05, 1.0, 0.05, 0.6)
        self.keep_spin.setToolTip("attention mass kept by DINO's threshold")
        self.choose_button = QPushButton("Choose mask by DINO attention")
        self.choose_button.setToolTip(
            "the mask (label of the masks layer) with the highest IoU with the thresholded DINO "
            "attention; ties: highest mean attention inside"
        )
        self.choose_button.clicked.connect(self.choose_by_attention)
        of.addRow("DINO backbone", self.backbone_combo)
        of.addRow("its weights", self.bb_weights_edit)
        of.addRow("attention kept", self.keep_spin)
        of.addRow(self.choose_button)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(auto)
        layout.addWidget(bm)
        layout.addWidget(one)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._buttons = (self.auto_button, self.masks_button, self.boxes_button,
                         self.choose_button)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layers)
        self._refresh_layers()

    # -- layer lists --------------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        from napari.layers import Image, Labels, Shapes

        def fill(combo: QComboBox, names: list[str], prefer_last: bool = False) -> None:
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            elif prefer_last and names:
                combo.setCurrentIndex(len(names) - 1)
            combo.blockSignals(False)

        layers = list(self.viewer.layers)
        fill(self.image_combo, [ly.name for ly in layers if isinstance(ly, Image)
                                and not ly.metadata.get("dinoseg_output")])
        shapes = [ly.name for ly in layers if isinstance(ly, Shapes)]
        fill(self.shapes_combo, shapes, prefer_last=True)
        fill(self.labels_combo, [ly.name for ly in layers if isinstance(ly, Labels)],
             prefer_last=True)
        fill(self.target_combo, [NEW_LAYER, *shapes])

    def _browse_weights(self) -> None:
        path = browse_checkpoint(self, "SAM checkpoint")
        if path:
            self.weights_edit.setText(path)

    def model_key(self) -> tuple[str, str, str]:
        return (self.model_combo.currentText(), self.weights_edit.text().strip() or "official",
                self.device_combo.currentText())

    def sam_model(self, key: tuple[str, str, str] | None = None) -> Any:
        """The chosen SAM, loaded once per (model, weights, device) for this dock."""
        return self._models.get(key or self.model_key())

    def auto_params(self) -> Any:
        from headless.sam import AutoMaskParams

        return AutoMaskParams(
            points_per_side=self.points_spin.value(), points_per_batch=self.batch_spin.value(),
            pred_iou_thresh=self.iou_spin.value(),
            stability_score_thresh=self.stab_spin.value(),
            box_nms_thresh=self.nms_spin.value(), crop_n_layers=self.crops_spin.value(),
            min_mask_region_area=self.area_spin.value(),
        )

    def _image_layer(self) -> Any:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("Open an image first (File > Open, or File > Open Sample).")
        return self.viewer.layers[name]

    def _store(self, layer: Any) -> Any:
        """The project folder next to the image file, for the embedding cache (or None)."""
        from pathlib import Path

        from headless.store import ProjectStore

        path = getattr(getattr(layer, "source", None), "path", None)
        if not self.cache_check.isChecked() or not path or not Path(path).is_file():
            return None
        return ProjectStore.for_image(path)

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self._say(f"error: {message}")
        show_error(message)

    def _run(self, gen: Any, on_result: Any, description: str) -> None:
        from napari_dinoseg._widgets.common.workers import start

        for b in self._buttons:
            b.setEnabled(False)
        self._say(f"{description}…")

        def finished() -> None:
            for b in self._buttons:
                b.setEnabled(True)

        def failed(exc: BaseException) -> None:
            self._say(f"error: {exc}")

        self._worker = start(gen, on_result, description, on_error=failed, on_finish=finished)

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

        def compute():
            from headless.progress import Progress
            from headless.sam import automatic_masks

            yield Progress(0, 1, f"loading SAM {key[0]}")
            sam = self.sam_model(key)
            ms = yield from automatic_masks(sam, image, params, store)
            return ms, sam

        def show(result: Any) -> None:
            ms, sam = result
            self._add_masks(layer, ms, sam, f"{layer.name}{tag} SAM masks",
                            {"params": _asdict(params)})

        self._run(compute(), show, f"SAM automatic masks of {layer.name}")

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
            boxes = _to_image_pixels(layer_to_boxes(shapes), shapes, layer)
            image = current_slice(layer, self.viewer)
        except ValueError as exc:
            self._error(str(exc))
            return
        if not boxes:
            self._error(f"'{name}' holds no boxes: draw rectangles, or compute boxes first.")
            return
        key, store, tag = self.model_key(), self._store(layer), slice_label(layer, self.viewer)

        def compute():
            from headless.progress import Progress
            from headless.sam import masks_from_boxes

            yield Progress(0, 1, f"loading SAM {key[0]}")
            sam = self.sam_model(key)
            ms = yield from masks_from_boxes(sam, image, boxes, store)
            return ms, sam

        def show(result: Any) -> None:
            from napari.utils.notifications import show_warning

            ms, sam = result
            self._add_masks(layer, ms, sam, f"{layer.name}{tag} SAM masks from {name}",
                            {"boxes_layer": name})
            if ms.empty_prompts:
                show_warning(f"{len(ms.empty_prompts)} box(es) of '{name}' lie outside the "
                             "image; their masks are empty")

        self._run(compute(), show, f"SAM masks from the boxes of {name}")

    def boxes_from_masks(self) -> None:
        """Tight boxes of every label of the chosen Labels layer -> appended to a boxes layer."""
        from headless.sam import boxes_from_labels

        name = self.labels_combo.currentText()
        if not name or name not in self.viewer.layers:
            self._error("Choose a Labels layer of masks (run SAM first).")
            return
        labels_layer = self.viewer.layers[name]
        data = np.asarray(labels_layer.data)
        if data.ndim != 2:
            self._error(f"'{name}' is {data.ndim}D; boxes from masks needs a 2D labels layer")
            return
        scores = _label_scores(labels_layer)

        def compute():
            from headless.progress import Progress

            yield Progress(0, 1, "tight boxes")
            return boxes_from_labels(data, scores=scores, source="sam")

        def show(boxes: Any) -> None:
            self.last_result = boxes
            target = self._put_boxes(boxes, labels_layer, f"{name} boxes")
            self._say(f"{len(boxes)} box(es) from '{name}' -> '{target.name}'")

        self._run(compute(), show, f"boxes from the masks of {name}")

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
            if data.shape != _hw(image):
                raise ValueError(f"'{name}' has shape {data.shape}, the image {_hw(image)}")
            if not (data > 0).any():
                raise ValueError(f"'{name}' holds no masks")
        except ValueError as exc:
            self._error(str(exc))
            return
        bkey = (self.backbone_combo.currentText(), self.bb_weights_edit.text().strip()
                or "official", self.device_combo.currentText())
        keep = self.keep_spin.value()

        def compute():
            from headless.progress import Progress
            from headless.sam import attention_for_image, choose_mask, masks_from_labels

            yield Progress(0, 2, f"loading {bkey[0]}")
            bb = self._backbones.get(bkey)
            yield Progress(1, 2, "attention")
            attn, att_mask = attention_for_image(bb, image, keep)
            values, masks = masks_from_labels(data)
            choice = choose_mask(masks, attention=attn, attention_mask=att_mask)
            return choice, int(values[choice.index]), bb

        def show(result: Any) -> None:
            choice, value, bb = result
            self.last_result = choice
            labels_layer.selected_label = value
            labels_layer.metadata = {**labels_layer.metadata,
                                     "dinoseg_chosen": {"label": value, "rule": choice.rule,
                                                        "backbone": bb.name,
                                                        "weights": bb.weights_label}}
            target = self._put_boxes([choice.box], labels_layer, f"{name} pseudo GT")
            self._say(
                f"chosen label {value} (IoU {choice.scores[choice.index]:.2f} with the "
                f"thresholded attention of {bb.name}, {bb.weights_label}) -> '{target.name}'"
            )

        self._run(compute(), show, f"one mask of {name} by DINO attention")

    # -- outputs ------------------------------------------------------------------------------
    def _add_masks(self, image_layer: Any, ms: Any, sam: Any, name: str,
                   extra: dict[str, Any]) -> Any:
        self.last_result = ms
        random_note = " (random weights)" if sam.is_random else ""
        meta = {META_KEY: {"model": sam.name, "weights": sam.weights_label, "kind": ms.kind,
                           "n_masks": ms.n, **extra}}
        layer = self.viewer.add_labels(
            ms.labels(), name=name + random_note, features=mask_features(ms),
            scale=tuple(image_layer.scale[-2:]), translate=tuple(image_layer.translate[-2:]),
            opacity=0.5, metadata=meta,
        )
        self._say(f"{ms.n} mask(s) with SAM {sam.name} ({sam.weights_label}) -> '{layer.name}'")
        return layer

    def _put_boxes(self, boxes: list[Any], source_layer: Any, new_name: str) -> Any:
        """Append boxes to the chosen boxes layer, or add a new one; never removes a shape."""
        from napari_dinoseg._widgets.boxes.layers import (
            DEFAULT_FEATURES,
            box_to_rectangle,
            boxes_to_features,
            shapes_kwargs,
        )

        target = self.target_combo.currentText()
        scale = tuple(source_layer.scale[-2:])
        translate = tuple(source_layer.translate[-2:])
        if target and target != NEW_LAYER and target in self.viewer.layers:
            layer = self.viewer.layers[target]
            if layer.ndim == 2 and boxes:
                feats = boxes_to_features(boxes)
                shp = layer
                n0 = len(shp.data)
                shp.add_rectangles([box_to_rectangle(b) for b in boxes],
                                   edge_color="#7cff7c", face_color="transparent")
                import pandas as pd

                old = shp.features.iloc[:n0]
                table = {c: list(old[c]) for c in old.columns}
                for col, values in feats.items():  # a layer drawn by hand has no columns yet
                    kept = table.get(col, [DEFAULT_FEATURES[col]] * n0)
                    table[col] = list(kept) + list(values)
                for col in old.columns:
                    if col not in feats:
                        table[col] = table[col] + [None] * len(boxes)
                shp.features = pd.DataFrame(table)
                return layer
            if layer.ndim != 2:
                self._error(f"'{target}' is not a 2D boxes layer; added a new layer instead")
        meta = {"images": [source_layer.name], "sizes": {}, "classes": ["object"]}
        kwargs = shapes_kwargs(boxes, new_name, meta)
        layer = self.viewer.add_shapes([box_to_rectangle(b) for b in boxes], ndim=2,
                                       scale=scale, translate=translate, **kwargs)
        return layer


def _asdict(params: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(params)


def _hw(image: np.ndarray) -> tuple[int, int]:
    from headless.images import to_rgb01

    return tuple(to_rgb01(image).shape[:2])


def _label_scores(labels_layer: Any) -> dict[int, float] | None:
    """label value -> predicted IoU from a SAM masks layer's features (None if absent)."""
    f = labels_layer.features
    if f is None or "predicted_iou" not in getattr(f, "columns", []):
        return None
    idx = f["index"] if "index" in f.columns else range(len(f))
    return {int(i): float(s) for i, s in zip(idx, f["predicted_iou"])}


def _to_image_pixels(boxes: list[Any], shapes: Any, image_layer: Any) -> list[Any]:
    """Boxes drawn in a Shapes layer -> pixels of the image layer (scale/translate differ)."""
    from dataclasses import replace

    s_scale = np.asarray(shapes.scale[-2:], float)
    s_tr = np.asarray(shapes.translate[-2:], float)
    i_scale = np.asarray(image_layer.scale[-2:], float)
    i_tr = np.asarray(image_layer.translate[-2:], float)
    if np.allclose(s_scale, i_scale) and np.allclose(s_tr, i_tr):
        return boxes
    out = []
    for b in boxes:
        # pixel-edge coordinates: world = (edge - 0.5) * scale + translate, per layer
        y0, x0 = ((np.array([b.y0, b.x0]) - 0.5) * s_scale + s_tr - i_tr) / i_scale + 0.5
        y1, x1 = ((np.array([b.y1, b.x1]) - 0.5) * s_scale + s_tr - i_tr) / i_scale + 0.5
        out.append(replace(b, x0=float(x0), y0=float(y0), x1=float(x1), y1=float(y1)))
    return out


def _load_sam(name: str, weights: str, device: str) -> Any:
    from headless.sam import load_sam

    return load_sam(name, weights, device=device)
