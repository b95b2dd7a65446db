"""Scribbles to segmentation: pixel probes (linear / forest, safe ``.npz`` files), the dense CRF,
and the workflow (classes, cached features, live retraining, apply to a folder) for dock and CLI.

Names are re-exported lazily (``from headless.segment import Segmenter``); importing the package
loads neither torch nor scikit-learn.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

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
__all__ = sorted(_EXPORTS)
