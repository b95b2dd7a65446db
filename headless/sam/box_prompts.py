"""Box-prompted SAM masks: one mask per box, as a progress generator.

Heavy imports (torch, segment_anything) happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from headless.boxes import Box
from headless.progress import Progress, ProgressGen
from headless.sam.masks import MaskSet
from headless.sam.model import to_uint8_rgb

if TYPE_CHECKING:  # pragma: no cover
    from headless.sam.model import SamModel
    from headless.store import ProjectStore


# ---------------------------------------------------------------------------------------------
# Box-prompted masks
# ---------------------------------------------------------------------------------------------
def masks_from_boxes(sam: SamModel, image: np.ndarray, boxes: Sequence[Box],
                     store: ProjectStore | None = None, *, batch_size: int = 16,
                     multimask: bool = False,
                     stability_score_offset: float = 1.0) -> ProgressGen[MaskSet]:
    """One SAM mask per box, in the order of ``boxes``, as a progress generator.

    Boxes are clipped to the image first; a box entirely outside the image gets an empty mask
    (and its index in ``empty_prompts``). No boxes -> an empty :class:`MaskSet` without running
    the encoder. ``multimask=True`` lets SAM propose three masks per box and keeps the one with
    the highest predicted IoU (SAM's advice for a box prompt is a single mask, the default).
    """
    import torch
    from segment_anything.utils.amg import calculate_stability_score

    rgb = to_uint8_rgb(image)
    h, w = rgb.shape[:2]
    n = len(boxes)
    if n == 0:
        return MaskSet.empty((h, w), "boxes", sam.name)
    clipped = [b.clip(w, h) for b in boxes]
    valid = [i for i, b in enumerate(clipped) if b.width > 0 and b.height > 0]
    xyxy = np.array([b.xyxy() for b in clipped], np.float32).reshape(n, 4)
    masks = np.zeros((n, h, w), bool)
    ious = np.zeros(n, np.float32)
    stab = np.zeros(n, np.float32)
    n_batches = math.ceil(len(valid) / max(1, batch_size))
    total = 1 + n_batches
    if valid:
        yield Progress(0, total, "embedding image")
        sam.set_image(rgb, store)
        thr = sam.model.mask_threshold
        for bi in range(n_batches):
            yield Progress(1 + bi, total, f"boxes batch {bi + 1}/{n_batches}")
            idx = valid[bi * batch_size:(bi + 1) * batch_size]
            tb = sam.predictor.transform.apply_boxes_torch(
                torch.as_tensor(xyxy[idx], device=sam.device), (h, w)
            )
            with torch.no_grad():
                logits, iou, _ = sam.predictor.predict_torch(
                    None, None, boxes=tb, multimask_output=multimask, return_logits=True
                )
                best = iou.argmax(dim=1)
                rows = torch.arange(len(idx), device=iou.device)
                logits, iou = logits[rows, best], iou[rows, best]
                s = calculate_stability_score(logits, thr, stability_score_offset)
            masks[idx] = (logits > thr).cpu().numpy()
            ious[idx] = iou.float().cpu().numpy()
            stab[idx] = s.float().cpu().numpy()
    empty = [i for i in range(n) if i not in set(valid)]
    return MaskSet(masks, ious, stab, xyxy, "boxes", sam.name, empty_prompts=empty,
                   classes=[b.label for b in boxes])
