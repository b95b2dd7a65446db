"""Scribbles to segmentation: pixel probes (linear / forest, safe ``.npz`` files), the dense CRF,
and the workflow (classes, cached features, live retraining, apply to a folder) for dock and CLI.

Names are re-exported lazily (``from headless.segment import Segmenter``); importing the package
loads neither torch nor scikit-learn. :mod:`.probe` and :mod:`.workflow` re-export their parts.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("CLASSIFIERS", "ProbeError", "ProbeMismatchError", "ProbeMeta"),
                    "probe_meta"),
    **dict.fromkeys(("ForestProbe", "LinearProbe", "Probe"), "probe_models"),
    **dict.fromkeys(("TrainParams", "train_probe"), "probe_train"),
    "load_probe": "probe_file",
    **dict.fromkeys(("CRFParams", "crf_refine"), "crf"),
    **dict.fromkeys(("ClassMap", "ScribbleError", "check_scribbles"), "scribbles"),
    **dict.fromkeys(("FEATURE_MODES", "FeatureSource", "FeatureSpec"), "feature_source"),
    **dict.fromkeys(("SegmentSettings", "Segmentation", "Segmenter", "segment_image"),
                    "segmenter"),
    **dict.fromkeys(("ApplyResult", "apply_to_all"), "apply"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
