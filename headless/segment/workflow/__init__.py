"""Scribbles to segmentation: the workflow shared by the napari dock and ``dinoseg segment``.

scribbles -> classes -> features -> train a probe -> class probabilities -> optional dense CRF
-> labels. Everything here is a progress generator (see :mod:`headless.progress`), so the GUI
runs it in a worker that a newer stroke can cancel, and the CLI drives it with tqdm.

Classes come from the scribbles themselves: the sorted non-zero values (85/170/255, 127/254...)
are the classes, 0 is unlabelled, and the output labels carry the *same values*, so a
segmentation can be compared with, or painted over, the scribbles directly.

Features are cached per image (content hash + feature settings) in a :class:`FeatureSource`, so
retraining after a stroke only refits the classifier. For a linear probe on ViT features too
large to hold (``H * W * D`` floats above ``max_feature_bytes``), training samples HR features
at the scribbled pixels only (:func:`headless.features.hr_sample`) and prediction runs through the
linear-map path (:func:`headless.features.hr_linear` with the scaler folded into W and b), so a
2048 x 2048 image is segmented holding C channels instead of D. Logistic regression is linear in
logit space, so this is exact, not an approximation.

One module each: :mod:`.scribbles` (classes, checks, slices), :mod:`.feature_source` (feature
specs and the per-image cache), :mod:`.segmenter` (training, prediction, CRF) and :mod:`.apply`
(apply to a folder). The package exports their public names
(``from headless.segment.workflow import Segmenter``).
"""

from __future__ import annotations

from headless.segment.workflow.apply import ApplyResult, apply_to_all, iter_named_images
from headless.segment.workflow.feature_source import (
    DEFAULT_BACKBONE,
    FEATURE_MODES,
    MAX_FEATURE_BYTES,
    VIT_MODES,
    FeatureSource,
    FeatureSpec,
)
from headless.segment.workflow.scribbles import (
    ClassMap,
    ScribbleError,
    check_scribbles,
    image_slices,
    one_image,
    spatial_shape,
)
from headless.segment.workflow.segmenter import (
    DEFAULT_CLASSIFIER,
    Segmentation,
    Segmenter,
    SegmentSettings,
    class_value_dtype,
    segment_image,
    with_crf,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_CLASSIFIER",
    "FEATURE_MODES",
    "MAX_FEATURE_BYTES",
    "VIT_MODES",
    "ApplyResult",
    "ClassMap",
    "FeatureSource",
    "FeatureSpec",
    "ScribbleError",
    "SegmentSettings",
    "Segmentation",
    "Segmenter",
    "apply_to_all",
    "check_scribbles",
    "class_value_dtype",
    "image_slices",
    "iter_named_images",
    "one_image",
    "segment_image",
    "spatial_shape",
    "with_crf",
]
