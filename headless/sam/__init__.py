"""Segment Anything (SAM): weights, cached image embeddings, masks, boxes, one mask per image.

Built on Meta's ``segment-anything`` package (its real model classes, predictor and automatic
mask generator). What this package adds around it, one module each:

- :mod:`.specs`: a registry of the official ViT-B/L/H checkpoints (URL, file name,
  architecture) plus a tiny test architecture;
- :mod:`.weights`: those checkpoints loaded from the cache folder or a local file
  **without executing pickled code** (``torch.load(weights_only=True)`` or safetensors);
- :mod:`.model`: :class:`SamModel`, a loaded SAM whose image embedding is computed once per
  image *content* (memory LRU + optional :class:`~headless.store.ProjectStore` cache), so
  automatic masks, box-prompted masks and re-runs with other filter settings share one encoder
  pass;
- :mod:`.automatic` and :mod:`.box_prompts`: progress generators for automatic masks (SAM's
  point grid and quality filters, driven batch by batch so the GUI can show progress and
  cancel) and for one mask per box;
- :mod:`.masks`: :class:`MaskSet` and exact conversions masks -> tight boxes and masks -> a
  labels image;
- :mod:`.choice`: seed 000's rule for choosing one mask per image as its pseudo ground truth
  (:func:`choose_mask`).

Every public name is re-exported here, so ``from headless.sam import load_sam`` keeps working.
Heavy imports (torch, segment_anything) happen inside functions: importing this package is cheap.
"""

from __future__ import annotations

from headless.sam.automatic import AutoMaskParams, automatic_masks, remove_small_regions
from headless.sam.box_prompts import masks_from_boxes
from headless.sam.choice import (
    MaskChoice,
    attention_for_image,
    choose_mask,
    crop_classifier,
    mask_crops,
    threshold_attention,
)
from headless.sam.masks import (
    MaskSet,
    boxes_from_labels,
    labels_from_masks,
    mask_to_box,
    masks_from_labels,
    masks_to_boxes,
)
from headless.sam.model import EMBEDDING_CACHE_KIND, Embedding, SamModel, to_uint8_rgb
from headless.sam.specs import SAM_MODELS, SamSpec, get_spec, list_sam_models
from headless.sam.weights import (
    CheckpointError,
    SamWeightsError,
    build_sam_model,
    download_weights,
    load_sam,
    official_weights_path,
    read_state_dict,
    resolve_weights,
    save_random_checkpoint,
    weights_dir,
)

__all__ = [
    "EMBEDDING_CACHE_KIND",
    "SAM_MODELS",
    "AutoMaskParams",
    "CheckpointError",
    "Embedding",
    "MaskChoice",
    "MaskSet",
    "SamModel",
    "SamSpec",
    "SamWeightsError",
    "attention_for_image",
    "automatic_masks",
    "boxes_from_labels",
    "build_sam_model",
    "choose_mask",
    "crop_classifier",
    "download_weights",
    "get_spec",
    "labels_from_masks",
    "list_sam_models",
    "load_sam",
    "mask_crops",
    "mask_to_box",
    "masks_from_boxes",
    "masks_from_labels",
    "masks_to_boxes",
    "official_weights_path",
    "read_state_dict",
    "remove_small_regions",
    "resolve_weights",
    "save_random_checkpoint",
    "threshold_attention",
    "to_uint8_rgb",
    "weights_dir",
]
