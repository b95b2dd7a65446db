"""Training crops that keep the object in view (seed 000), as torchvision.transforms.v2 transforms:
the crop-window maths, the box-localized crop and the attention density crop.

Names are re-exported lazily (``from headless.train.crops import LocalizedRandomResizedCrop``);
importing the package loads neither torch nor torchvision. Modules import each other by full path.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("CropWindow", "aiou", "random_resized_crop_window"), "window"),
    **dict.fromkeys(
        ("LocalizedRandomResizedCrop", "maiou_approx", "maiou_estimate", "random_box",
         "thr_for_maiou", "to_bounding_boxes"),
        "localized",
    ),
    # the crop's input types and cleaning, which live in headless.train.attention_maps
    **dict.fromkeys(
        ("AttentionDensity", "AttentionDensityCrop", "AttentionMap", "clean_attention_density"),
        "attention",
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
