"""Training data: an ImageFolder and its split, boxes matched to its images, the keyed-random
dataset and batch sampler, the seed-000 transforms, and the plan a job checks before it starts.

Names are re-exported lazily (``from headless.train.data import ClassifierDataset``); importing
the package loads neither torch nor torchvision. Modules import each other by full path.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    "DatasetError": "errors",
    **dict.fromkeys(("FolderIndex", "Split", "make_split", "scan_image_folder"), "folders"),
    **dict.fromkeys(("BoxTable", "match_boxes", "read_box_table"), "box_table"),
    **dict.fromkeys(
        ("ClassifierDataset", "EpochBatches", "load_rgb_uint8", "sample_seed", "seeded"),
        "dataset",
    ),
    **dict.fromkeys(
        ("IMAGENET_MEAN", "IMAGENET_STD", "colour_augment", "eval_transform", "make_crop",
         "train_transform"),
        "transforms",
    ),
    **dict.fromkeys(("DataPlan", "plan_data"), "plan"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
