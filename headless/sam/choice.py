"""One mask per image as its pseudo ground truth (seed 000's rule), and what the rule needs.

Mask crops, a classifier wrapper (crops -> logits), DINO attention at image resolution and
its keep-mass threshold.

Heavy imports (torch) happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from headless.boxes import Box
from headless.sam.masks import MaskSet, mask_to_box


# ---------------------------------------------------------------------------------------------
# One mask per image (seed 000)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskChoice:
    """The mask chosen as an image's pseudo ground truth, and why.

    ``scores`` holds each mask's score under ``rule`` (the class logit, or the IoU with the
    thresholded attention); ``tiebreak`` the mean attention inside each mask (attention rule).
    """

    index: int
    rule: str  # "classifier" | "attention"
    scores: np.ndarray
    tiebreak: np.ndarray | None
    box: Box | None


def mask_crops(image: np.ndarray, masks: np.ndarray) -> list[np.ndarray | None]:
    """The image cropped to each mask's tight box, RGB float32 in [0, 1] (None if empty)."""
    from headless.images import to_rgb01

    rgb = to_rgb01(image)
    crops: list[np.ndarray | None] = []
    for m in masks:
        b = mask_to_box(m)
        crops.append(None if b is None else
                     rgb[int(b.y0):int(b.y1), int(b.x0):int(b.x1)].copy())
    return crops


def crop_classifier(module, size: int = 224,
                    mean: Sequence[float] = (0.485, 0.456, 0.406),
                    std: Sequence[float] = (0.229, 0.224, 0.225), device: str = "cpu",
                    batch_size: int = 32) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Wrap an image classifier (e.g. a torchvision ResNet-50) as ``crops -> logits``.

    Each crop is resized to ``size x size`` (bilinear, antialiased), normalised with
    ``mean``/``std`` and run through ``module`` in eval mode, in batches; the result is the
    ``(N, C)`` logits :func:`choose_mask` expects. Seed 000 scored SAM mask crops this way with
    its trained ResNet-50.
    """
    import torch
    import torch.nn.functional as F

    m = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def classify(crops: list[np.ndarray]) -> np.ndarray:
        module.eval()
        out = []
        for start in range(0, len(crops), batch_size):
            batch = []
            for c in crops[start:start + batch_size]:
                t = torch.from_numpy(np.ascontiguousarray(c, np.float32)).permute(2, 0, 1)[None]
                batch.append(F.interpolate(t, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True))
            x = ((torch.cat(batch) - m) / s).to(device)
            with torch.no_grad():
                out.append(module(x).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    return classify


def choose_mask(masks: np.ndarray | MaskSet, image: np.ndarray | None = None, *,
                classifier: Callable[[list[np.ndarray]], Any] | None = None,
                class_index: int | None = None,
                attention: np.ndarray | None = None,
                attention_mask: np.ndarray | None = None,
                keep: float = 0.6) -> MaskChoice:
    """Pick one mask per image as its pseudo ground truth, by seed 000's rule.

    With a classifier (``classifier(crops) -> logits`` of shape ``(N, C)``, one row per crop;
    crops are the image cut to each mask's tight box, RGB float32 in [0, 1]): the mask whose
    crop gets the highest logit for ``class_index``, the image's class.

    Without one, the mask that best agrees with the DINO attention map: highest IoU between
    the mask and the thresholded attention mask (``attention_mask``; if not given, ``attention``
    thresholded with DINO's rule of keeping the smallest set of pixels that holds ``keep`` of
    the attention mass); ties broken by the highest mean attention inside the mask. Both maps
    are at image resolution (see :func:`attention_for_image`).

    Remaining ties go to the lowest index (the largest mask for automatic masks). Empty masks
    are never chosen.
    """
    m = masks.masks if isinstance(masks, MaskSet) else np.asarray(masks, bool)
    if m.ndim != 3 or m.shape[0] == 0:
        raise ValueError("no masks to choose from")
    n = m.shape[0]
    nonempty = m.reshape(n, -1).any(1)
    if not nonempty.any():
        raise ValueError("every mask is empty; nothing to choose")

    if classifier is not None:
        if image is None or class_index is None:
            raise ValueError("the classifier rule needs the image and the image's class index")
        crops = mask_crops(image, m)
        idx = [i for i, c in enumerate(crops) if c is not None]
        logits = classifier([crops[i] for i in idx])
        if hasattr(logits, "detach"):
            logits = logits.detach().float().cpu().numpy()
        logits = np.asarray(logits, np.float64)
        if logits.ndim == 1:
            logits = logits[:, None]
            if class_index != 0:
                raise ValueError("the classifier returned one score per crop; use class_index=0")
        if logits.shape[0] != len(idx):
            raise ValueError(
                f"the classifier returned {logits.shape[0]} rows for {len(idx)} crops"
            )
        if not 0 <= class_index < logits.shape[1]:
            raise ValueError(
                f"class index {class_index} out of range for {logits.shape[1]} classes"
            )
        scores = np.full(n, -np.inf)
        scores[idx] = logits[:, class_index]
        best = int(np.argmax(scores))
        return MaskChoice(best, "classifier", scores, None, mask_to_box(m[best], source="sam"))

    if attention is None and attention_mask is None:
        raise ValueError("give a classifier or a DINO attention map to choose a mask")
    if attention is not None:
        attention = np.asarray(attention, np.float64)
        if attention.shape != m.shape[1:]:
            raise ValueError(
                f"attention map has shape {attention.shape}, the masks {m.shape[1:]}"
            )
    if attention_mask is None:
        attention_mask = threshold_attention(attention, keep)
    att = np.asarray(attention_mask, bool)
    if att.shape != m.shape[1:]:
        raise ValueError(f"attention mask has shape {att.shape}, the masks {m.shape[1:]}")
    flat = m.reshape(n, -1)
    a = att.reshape(-1)
    inter = (flat & a).sum(1)
    union = (flat | a).sum(1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    iou = np.where(nonempty, iou, -np.inf)
    if attention is not None:
        areas = flat.sum(1)
        mean_att = np.where(nonempty, (flat * attention.reshape(1, -1)).sum(1)
                            / np.maximum(areas, 1), -np.inf)
    else:
        mean_att = np.zeros(n)
    # highest IoU, then highest mean attention, then lowest index
    order = np.lexsort((np.arange(n), -mean_att, -iou))
    best = int(order[0])
    return MaskChoice(best, "attention", iou, mean_att if attention is not None else None,
                      mask_to_box(m[best], source="sam"))


def threshold_attention(attention: np.ndarray, keep: float = 0.6) -> np.ndarray:
    """DINO's rule: the smallest set of pixels holding ``keep`` of the attention mass.

    Delegates to :func:`headless.features.forward.attention_mask` so the whole project thresholds
    attention one way.
    """
    from headless.features.forward import attention_mask

    return np.asarray(attention_mask(np.asarray(attention, np.float32), keep), bool)


def attention_for_image(backbone, image: np.ndarray, keep: float = 0.6,
                        size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DINO attention at image resolution: (head-mean map float32, thresholded bool mask).

    The map is the last layer's CLS attention averaged over heads; it is thresholded on the
    patch grid with DINO's keep-mass rule (:func:`headless.features.attention_mask`), then both
    are brought to the image's pixels with :func:`headless.features.forward.grid_to_image` (nearest:
    each patch covers its block of pixels).
    """
    from headless.features import forward as features

    feats = features.extract_image(backbone, np.asarray(image), size=size)
    attn = feats.attn[0].float().mean(0).cpu().numpy().astype(np.float32)  # (h, w)
    mask = np.asarray(features.attention_mask(attn, keep), bool)
    return (features.grid_to_image(attn, feats).astype(np.float32),
            features.grid_to_image(mask, feats).astype(bool))
