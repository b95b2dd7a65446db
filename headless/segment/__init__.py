"""Scribbles to segmentation: pixel probes (linear / forest, safe ``.npz`` files), the dense CRF,
and the workflow (classes, cached features, live retraining, apply to a folder) for dock and CLI.

Names are re-exported lazily (``from headless.segment import Segmenter``); importing the package
loads neither torch nor scikit-learn.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

#: the ViT of the ViT feature modes when none is named (a plain constant here, so the dock can
#: show it without importing the workflow)
DEFAULT_BACKBONE = "dinov2_vits14_reg"
#: the probe of each feature mode when none is named. Hybrid defaults to the linear probe: with
#: the ViT block weighted down (vit_weight) it beat the forest on both scribble images (the
#: forest's random feature subsets are mostly ViT channels).
DEFAULT_CLASSIFIER = {"classical": "rf", "hybrid": "linear", "hr": "linear",
                      "bilinear": "linear", "patch": "linear"}

_EXPORTS = {
    **dict.fromkeys(
        ("CLASSIFIERS", "ForestProbe", "LinearProbe", "Probe", "ProbeError", "ProbeMeta",
         "ProbeMismatchError", "TrainParams", "load_probe", "train_probe"),
        "probe",
    ),
    **dict.fromkeys(("CRFParams", "crf_refine"), "crf"),
    **dict.fromkeys(
        ("FEATURE_MODES", "ApplyResult", "ClassMap", "FeatureSource", "FeatureSpec",
         "ScribbleError", "SegmentSettings", "Segmentation", "Segmenter", "apply_to_all",
         "check_scribbles", "segment_image"),
        "workflow",
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*_EXPORTS, "DEFAULT_BACKBONE", "DEFAULT_CLASSIFIER"])
