"""What the SAM dock holds and computes, without Qt or napari: plain values in, jobs out.

The panel reads its fields into plain values (:func:`model_key`, :func:`auto_params`), asks
:class:`SamController` for a job (an engine progress generator that loads the model in the
worker) and shows the result as layers. The model caches, the last result and the layer
metadata / features the dock writes live here, so they are testable without a viewer.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_dinoseg._widgets.common.collector import long_lived_allocations
from napari_dinoseg._widgets.common.models import ModelCache, load_backbone_for_dock

NEW_LAYER = "(new layer)"
META_KEY = "dinoseg_sam"
Key = tuple[str, str, str]


def model_key(name: str, weights: str, device: str) -> Key:
    """``(name, weights, device)`` as the caches key models; empty weights mean 'official'."""
    return (name, weights.strip() or "official", device)


def auto_params(points_per_side: int, points_per_batch: int, pred_iou_thresh: float,
                stability_score_thresh: float, box_nms_thresh: float, crop_n_layers: int,
                min_mask_region_area: int) -> Any:
    """The automatic-mask settings of the form (an :class:`headless.sam.AutoMaskParams`)."""
    from headless.sam import AutoMaskParams

    return AutoMaskParams(
        points_per_side=points_per_side, points_per_batch=points_per_batch,
        pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
        box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers,
        min_mask_region_area=min_mask_region_area,
    )


def layer_parts(ms: Any) -> dict[str, Any]:
    """The masks layer's labels image and features (computed in the job, off the GUI thread)."""
    if ms.n == 0:
        return {}
    return {"labels": ms.labels(), "features": mask_features(ms)}


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


def masks_metadata(ms: Any, sam: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a masks layer: which SAM made it, how, and how many masks."""
    return {META_KEY: {"model": sam.name, "weights": sam.weights_label, "kind": ms.kind,
                       "n_masks": ms.n, **extra}}


def chosen_metadata(choice: Any, value: int, backbone: Any) -> dict[str, Any]:
    """What is added to a masks layer's metadata when one label is chosen by attention."""
    return {"dinoseg_chosen": {"label": value, "rule": choice.rule, "backbone": backbone.name,
                               "weights": backbone.weights_label}}


def label_scores(features: Any) -> dict[int, float] | None:
    """label value -> predicted IoU from a SAM masks layer's features (None if absent)."""
    f = features
    if f is None or "predicted_iou" not in getattr(f, "columns", []):
        return None
    idx = f["index"] if "index" in f.columns else range(len(f))
    return {int(i): float(s) for i, s in zip(idx, f["predicted_iou"])}


def to_image_pixels(boxes: list[Any], shapes: Any, image_layer: Any) -> list[Any]:
    """Boxes drawn in a Shapes layer -> pixels of the image layer (scale/translate differ).

    Only ``scale`` and ``translate`` of the two layers are read.
    """
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


def image_hw(image: np.ndarray) -> tuple[int, int]:
    """Height and width of an image as the engine reads it (grey, RGB or RGBA)."""
    from headless.images import to_rgb01

    return tuple(to_rgb01(image).shape[:2])


def load_sam_for_dock(name: str, weights: str, device: str) -> Any:
    """SAM for a dock: the checkpoint resolved (downloaded) first, then built and loaded with
    full garbage collections held off, as the backbones (:func:`load_backbone_for_dock`)."""
    from headless.sam import load_sam, resolve_weights

    path = resolve_weights(name, weights)  # None: random weights
    with long_lived_allocations():
        return load_sam(name, weights if path is None else path, device=device)


class SamController:
    """The SAM dock's models (one per key), its last result and the jobs it runs."""

    def __init__(self) -> None:
        self.models = ModelCache(load_sam_for_dock)
        self.backbones = ModelCache(load_backbone_for_dock)
        self.last_result: Any = None  # last MaskSet / list of boxes / MaskChoice (for scripts)

    def sam_model(self, key: Key) -> Any:
        """The SAM of ``key``, loaded once per (model, weights, device) for this dock."""
        return self.models.get(key)

    @staticmethod
    def store_for(path: str | Path | None, cache: bool) -> Any:
        """The project folder next to the image file, for the embedding cache (or None)."""
        from headless.store import ProjectStore

        if not cache or not path or not Path(path).is_file():
            return None
        return ProjectStore.for_image(path)

    # -- jobs: generators run in a worker; each loads its model there ---------------------
    def automatic_job(self, key: Key, image: np.ndarray, params: Any, store: Any) -> Any:
        """Automatic masks of ``image``; returns ``(MaskSet, sam, layer_parts(MaskSet))``."""
        from headless.progress import Progress
        from headless.sam import automatic_masks

        yield Progress(0, 1, f"loading SAM {key[0]}")
        sam = self.sam_model(key)
        ms = yield from automatic_masks(sam, image, params, store)
        return ms, sam, layer_parts(ms)

    def boxes_job(self, key: Key, image: np.ndarray, boxes: list[Any], store: Any) -> Any:
        """One mask per box; returns ``(MaskSet, sam, layer_parts(MaskSet))``."""
        from headless.progress import Progress
        from headless.sam import masks_from_boxes

        yield Progress(0, 1, f"loading SAM {key[0]}")
        sam = self.sam_model(key)
        ms = yield from masks_from_boxes(sam, image, boxes, store)
        return ms, sam, layer_parts(ms)

    @staticmethod
    def tight_boxes_job(data: np.ndarray, scores: dict[int, float] | None) -> Any:
        """Tight boxes of every label of ``data`` (source 'sam'); returns the boxes."""
        from headless.progress import Progress
        from headless.sam import boxes_from_labels

        yield Progress(0, 1, "tight boxes")
        return boxes_from_labels(data, scores=scores, source="sam")

    def choose_job(self, bkey: Key, image: np.ndarray, data: np.ndarray, keep: float) -> Any:
        """Seed 000's rule: the label best matching DINO's thresholded attention.

        Returns ``(MaskChoice, label value, backbone)``.
        """
        from headless.progress import Progress
        from headless.sam import attention_for_image, choose_mask, masks_from_labels

        yield Progress(0, 2, f"loading {bkey[0]}")
        bb = self.backbones.get(bkey)
        yield Progress(1, 2, "attention")
        attn, att_mask = attention_for_image(bb, image, keep)
        values, masks = masks_from_labels(data)
        choice = choose_mask(masks, attention=attn, attention_mask=att_mask)
        return choice, int(values[choice.index]), bb


def params_dict(params: Any) -> dict[str, Any]:
    """The settings as a plain dictionary (what a masks layer's metadata records)."""
    return asdict(params)


def appended_features(old: Any, boxes: list[Any]) -> Any:
    """The features table of a boxes layer after ``boxes`` were appended to its ``old`` rows.

    The user's rows keep their values; a layer drawn by hand has no box columns yet, so its
    rows get the defaults there; columns the boxes lack are ``None`` on the new rows.
    """
    import pandas as pd

    from napari_dinoseg._widgets.boxes.layers import DEFAULT_FEATURES, boxes_to_features

    feats = boxes_to_features(boxes)
    n0 = len(old)
    table = {c: list(old[c]) for c in old.columns}
    for col, values in feats.items():
        kept = table.get(col, [DEFAULT_FEATURES[col]] * n0)
        table[col] = list(kept) + list(values)
    for col in old.columns:
        if col not in feats:
            table[col] = table[col] + [None] * len(boxes)
    return pd.DataFrame(table)


def empty_masks_hint(params: Any, is_random: bool) -> str:
    """Why automatic masks came back empty, and which setting to try (one line)."""
    if is_random:
        return ("0 masks: with random (untrained) SAM weights no candidate passes the "
                f"predicted-IoU > {params.pred_iou_thresh:g} and stability ≥ "
                f"{params.stability_score_thresh:g} filters; choose real weights, or set both "
                "to 0 to see the raw candidates")
    return ("0 masks: every candidate was removed by the predicted-IoU > "
            f"{params.pred_iou_thresh:g} or stability ≥ {params.stability_score_thresh:g} "
            "filters (or min region area); try pred IoU 0.7 and stability 0.85, or more points "
            "per side")


def output_layer_name(kind: str, image: str, tag: str = "", random: bool = False) -> str:
    """'SAM masks · raccoon-10.jpg': kind first, then the image (the shared convention)."""
    from napari_dinoseg._widgets.common.layers import output_name

    return output_name(kind, f"{image}{tag}", random)


def output_layer_metadata(kind: str, image: str, **provenance: Any) -> dict[str, Any]:
    from napari_dinoseg._widgets.common.layers import output_metadata

    return output_metadata(kind, image, **provenance)


def source_image(layer: Any) -> str:
    """The image an output layer was made from (its provenance), else the layer's own name."""
    from napari_dinoseg._widgets.common.layers import PROVENANCE_KEY

    info = getattr(layer, "metadata", {}).get(PROVENANCE_KEY, {})
    return str(info.get("image") or layer.name)
