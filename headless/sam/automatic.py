"""SAM's automatic masks (point grid + quality filters) as a progress generator, and clean-up.

Heavy imports (torch, segment_anything) happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from headless.progress import Progress, ProgressGen
from headless.sam.masks import MaskSet, mask_to_box
from headless.sam.model import to_uint8_rgb

if TYPE_CHECKING:  # pragma: no cover
    from headless.sam.model import SamModel
    from headless.store import ProjectStore


# ---------------------------------------------------------------------------------------------
# Automatic masks
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoMaskParams:
    """SAM's automatic mask generator settings (defaults = SAM's, chosen for ViT-H).

    ``pred_iou_thresh``: drop masks whose predicted IoU is not above it.
    ``stability_score_thresh``: drop masks less stable than this under a +-offset logit cut.
    ``box_nms_thresh``: box IoU above which duplicate masks are suppressed.
    ``min_mask_region_area``: fill holes and remove islands smaller than this (pixels).
    ``crop_n_layers``: > 0 also runs on 4, 16, ... overlapping crops (each crop = one encoder
    pass, cached like the full image).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def validate(self) -> None:
        if self.points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1, got {self.points_per_side}")
        if self.points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {self.points_per_batch}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
                     "crop_nms_thresh", "crop_overlap_ratio"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")
        if self.crop_n_layers < 0 or self.min_mask_region_area < 0:
            raise ValueError("crop_n_layers and min_mask_region_area must be >= 0")
        if self.crop_n_points_downscale_factor < 1:
            raise ValueError("crop_n_points_downscale_factor must be >= 1")


def automatic_masks(sam: SamModel, image: np.ndarray, params: AutoMaskParams | None = None,
                    store: ProjectStore | None = None) -> ProgressGen[MaskSet]:
    """SAM's automatic mask generation on ``image``, as a progress generator.

    Same algorithm and filters as ``SamAutomaticMaskGenerator.generate`` (point grid, predicted
    IoU and stability filters, box NMS, crop layers), with two differences: every crop's
    embedding comes from :meth:`SamModel.embed` (the generator itself would re-run the encoder
    on every call), and the loop is driven batch by batch to report progress. Small-region
    clean-up is done with scipy (SAM's needs OpenCV). Empty masks are dropped; the result is
    sorted by area, largest first.
    """
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import (
        MaskData,
        batch_iterator,
        generate_crop_boxes,
        rle_to_mask,
        uncrop_boxes_xyxy,
        uncrop_points,
    )
    from torchvision.ops import batched_nms, box_area

    params = params or AutoMaskParams()
    params.validate()
    rgb = to_uint8_rgb(image)
    orig_size = rgb.shape[:2]
    gen = SamAutomaticMaskGenerator(
        sam.model,
        points_per_side=params.points_per_side,
        points_per_batch=params.points_per_batch,
        pred_iou_thresh=params.pred_iou_thresh,
        stability_score_thresh=params.stability_score_thresh,
        stability_score_offset=params.stability_score_offset,
        box_nms_thresh=params.box_nms_thresh,
        crop_n_layers=params.crop_n_layers,
        crop_nms_thresh=params.crop_nms_thresh,
        crop_overlap_ratio=params.crop_overlap_ratio,
        crop_n_points_downscale_factor=params.crop_n_points_downscale_factor,
        min_mask_region_area=0,  # done below without OpenCV
        output_mode="binary_mask",
    )
    gen.predictor = sam.predictor  # decode on our cached embeddings

    crop_boxes, layer_idxs = generate_crop_boxes(
        orig_size, params.crop_n_layers, params.crop_overlap_ratio
    )
    n_batches = [
        math.ceil(len(gen.point_grids[li]) / params.points_per_batch) for li in layer_idxs
    ]
    total = sum(n_batches) + len(crop_boxes) + 1
    done = 0
    data = MaskData()
    for ci, (crop_box, li) in enumerate(zip(crop_boxes, layer_idxs)):
        yield Progress(done, total, f"embedding crop {ci + 1}/{len(crop_boxes)}")
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        sam.set_image(crop, store)
        done += 1
        crop_hw = crop.shape[:2]
        points = gen.point_grids[li] * np.array(crop_hw)[None, ::-1]
        crop_data = MaskData()
        for bi, (pts,) in enumerate(batch_iterator(params.points_per_batch, points)):
            yield Progress(done, total, f"crop {ci + 1}: points batch {bi + 1}/{n_batches[ci]}")
            with torch.no_grad():
                crop_data.cat(gen._process_batch(pts, crop_hw, crop_box, orig_size))
            done += 1
        sam.predictor.reset_image()
        if len(crop_data["rles"]):
            keep = batched_nms(
                crop_data["boxes"].float(), crop_data["iou_preds"],
                torch.zeros(len(crop_data["boxes"])), iou_threshold=params.box_nms_thresh,
            )
            crop_data.filter(keep)
        crop_data["boxes"] = uncrop_boxes_xyxy(crop_data["boxes"], crop_box)
        crop_data["points"] = uncrop_points(crop_data["points"], crop_box)
        crop_data["crop_boxes"] = torch.tensor(
            [crop_box for _ in range(len(crop_data["rles"]))], dtype=torch.int64
        ).reshape(-1, 4)
        data.cat(crop_data)

    yield Progress(done, total, "filtering masks")
    if len(crop_boxes) > 1 and len(data["rles"]):
        scores = 1.0 / box_area(data["crop_boxes"]).float()  # prefer masks from smaller crops
        keep = batched_nms(data["boxes"].float(), scores, torch.zeros(len(data["boxes"])),
                           iou_threshold=params.crop_nms_thresh)
        data.filter(keep)
    data.to_numpy()

    masks = [rle_to_mask(r) for r in data["rles"]]
    ious = np.asarray(data["iou_preds"], np.float32).reshape(-1)
    stab = np.asarray(data["stability_score"], np.float32).reshape(-1)
    pts = np.asarray(data["points"], np.float32).reshape(-1, 2)
    if params.min_mask_region_area > 0 and masks:
        masks, keep_idx = _clean_small_regions(
            masks, params.min_mask_region_area, max(params.box_nms_thresh, params.crop_nms_thresh)
        )
        ious, stab, pts = ious[keep_idx], stab[keep_idx], pts[keep_idx]
    if not masks:
        return MaskSet.empty(orig_size, "automatic", sam.name)
    stack = np.stack(masks).astype(bool)
    areas = stack.reshape(len(stack), -1).sum(1)
    order = [i for i in np.argsort(-areas, kind="stable") if areas[i] > 0]
    return MaskSet(stack[order], ious[order], stab[order], pts[order], "automatic", sam.name)


def remove_small_regions(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """Fill holes and remove islands smaller than ``min_area`` pixels (8-connected).

    As SAM's post-processing: if every island is small, the largest one is kept.
    Returns the cleaned mask and whether it changed.
    """
    from scipy import ndimage

    eight = np.ones((3, 3), bool)
    m = np.asarray(mask, bool).copy()
    changed = False
    lab, n = ndimage.label(~m, structure=eight)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        small = np.flatnonzero(sizes < min_area) + 1
        if small.size:
            m |= np.isin(lab, small)
            changed = True
    lab, n = ndimage.label(m, structure=eight)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        keep = sizes >= min_area
        if not keep.all():
            if not keep.any():
                keep[int(np.argmax(sizes))] = True
            if not keep.all():
                m = np.isin(lab, np.flatnonzero(keep) + 1)
                changed = True
    return m, changed


def _clean_small_regions(masks: list[np.ndarray], min_area: int,
                         nms_thresh: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Clean every mask, then drop duplicates by box NMS preferring unchanged masks."""
    import torch
    from torchvision.ops import nms

    cleaned, scores, boxes = [], [], []
    for m in masks:
        c, changed = remove_small_regions(m, min_area)
        cleaned.append(c)
        scores.append(0.0 if changed else 1.0)
        b = mask_to_box(c)
        # inclusive corners, like SAM's batched_mask_to_box
        boxes.append([0, 0, 0, 0] if b is None else [b.x0, b.y0, b.x1 - 1, b.y1 - 1])
    keep = nms(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), nms_thresh)
    keep_idx = np.sort(keep.numpy())
    return [cleaned[i] for i in keep_idx], keep_idx
