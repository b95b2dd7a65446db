"""Pixel classifiers trained from scribbles: a linear probe and a random forest, saved safely.

Two classifiers cover the two kinds of features:

* :class:`LinearProbe` — multinomial logistic regression on standardised features, the usual
  probe for ViT features (the seed's "train a linear model on features ... so we just do a
  matrix multiply to get the full segmentation"). It is linear in logit space, so the scaler can
  be folded into the weights (:meth:`LinearProbe.folded`) and the whole prediction run through
  :func:`headless.features.highres.hr_linear` without ever building HR features.
* :class:`ForestProbe` — a random forest, the default for classical (and hybrid) features,
  whose strength is thresholds on many heterogeneous filters.

Both balance classes by default (scribbles are rarely balanced: a few strokes of a rare class
against long strokes of the background) and cap the training pixels per class so a retrain
stays interactive.

Saving: one ``.npz`` file holding plain numeric arrays plus a JSON metadata string (feature
mode, backbone, feature options, class names and values, scaler, feature dimension). The
forest is stored as its trees' node arrays (children, split feature, threshold, leaf class
distributions), from which :func:`load_probe` rebuilds working trees; nothing is pickled and
``np.load(..., allow_pickle=False)`` reads it. :meth:`Probe.check_compatible` names every
difference between a probe and the features it is about to be applied to.

One module each: :mod:`.meta` (metadata, errors, format tag), :mod:`.models` (the
classes, prediction, saving), :mod:`.trees` (trees as arrays), :mod:`.training`
(fitting) and :mod:`.files` (safe loading). The package exports their public names
(``from headless.segment.probe import load_probe``).
"""

from __future__ import annotations

from headless.segment.probe.files import load_probe
from headless.segment.probe.meta import (
    CLASSIFIERS,
    FORMAT,
    FORMAT_VERSION,
    ProbeError,
    ProbeMeta,
    ProbeMismatchError,
)
from headless.segment.probe.models import (
    PREDICT_CHUNK,
    ForestProbe,
    LinearProbe,
    Probe,
    class_values_array,
    softmax,
)
from headless.segment.probe.training import TrainParams, subsample_per_class, train_probe
from headless.segment.probe.trees import TreeArrays

__all__ = [
    "CLASSIFIERS",
    "FORMAT",
    "FORMAT_VERSION",
    "PREDICT_CHUNK",
    "ForestProbe",
    "LinearProbe",
    "Probe",
    "ProbeError",
    "ProbeMeta",
    "ProbeMismatchError",
    "TrainParams",
    "TreeArrays",
    "class_values_array",
    "load_probe",
    "softmax",
    "subsample_per_class",
    "train_probe",
]
