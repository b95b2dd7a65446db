"""Fitting a probe on scribbled feature rows: class balancing, per-class caps, warm starts.

scikit-learn is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headless.segment.probe.meta import CLASSIFIERS, ProbeError, ProbeMeta
from headless.segment.probe.models import ForestProbe, LinearProbe, Probe, n_threads
from headless.segment.probe.trees import TreeArrays

#: The linear probe's C per feature mode (others: :data:`LINEAR_C`). Hybrid features (384 ViT
#: channels weighted by ``vit_weight`` plus the filter bank) want a stronger penalty: on the
#: SEM / TEM scribble images with ViT weight 0.5, C = 0.01 gave mIoU 0.690 / 0.948 against
#: 0.677 / 0.945 at C = 0.1 (C 0.003 / 0.01 / 0.03 at weight 0.5: 0.689 / 0.690 / 0.688).
DEFAULT_C = {"hybrid": 0.01}
LINEAR_C = 0.1


def linear_c(params: TrainParams, mode: str | None) -> float:
    """The C a linear probe of ``mode`` features trains with (``params.C`` when set)."""
    return float(params.C) if params.C is not None else DEFAULT_C.get(mode or "", LINEAR_C)


@dataclass
class TrainParams:
    """Classifier settings. Defaults are chosen for interactive retraining on a laptop CPU."""

    balance: bool = True  # weight classes inversely to their number of scribbled pixels
    max_per_class: int = 10000  # training pixels kept per class (random, reproducible)
    # inverse L2 strength of the linear probe (on standardised features); None = per feature
    # mode (:data:`DEFAULT_C`)
    C: float | None = None
    max_iter: int = 300
    n_estimators: int = 50
    # fully grown trees whose leaves hold >= 10 pixels: scribbles are spatially correlated, so
    # leaves of single pixels memorise strokes (measured on scribbles/0: mIoU 0.659 -> 0.667)
    max_depth: int | None = None
    min_samples_leaf: int = 10
    max_features: str | float = "sqrt"
    n_jobs: int | None = None  # threads (default: CPU cores - 1, at most 4)
    seed: int = 0


def train_probe(
    x: np.ndarray, y: np.ndarray, meta: ProbeMeta, classifier: str = "linear",
    params: TrainParams | None = None, previous: Probe | None = None,
    channel_weights: np.ndarray | None = None,
) -> Probe:
    """Fit a probe on feature rows ``x`` (N, D) with class indices ``y`` (N,) in 0..C-1.

    ``previous``: a probe of the same kind, classes and dimension whose weights start the fit
    (warm start; live retraining after each stroke converges in a few iterations).
    ``channel_weights`` (D,) > 0 multiply the standardised channels of the linear probe
    (``z = w (x - mean) / std``; stored as ``std / w``, so a saved probe reapplies them): a
    block weighted below 1 costs more of the L2 penalty per unit of logit. The forest splits on
    thresholds, which scaling does not change, so it ignores them.
    """
    if classifier not in CLASSIFIERS:
        raise ProbeError(f"unknown classifier {classifier!r}; choose one of {CLASSIFIERS}")
    params = params or TrainParams()
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ProbeError(f"features {x.shape} and labels {y.shape} do not pair up")
    if x.shape[1] != meta.feature_dim:
        raise ProbeError(f"features have {x.shape[1]} channels, metadata says {meta.feature_dim}")
    present = np.unique(y)
    if present.size and (present.min() < 0 or present.max() >= meta.n_classes):
        raise ProbeError(f"class indices must lie in 0..{meta.n_classes - 1}")
    if present.size < 2:
        names = [meta.class_names[i] for i in present]
        raise ProbeError(
            "scribble at least two classes to train a classifier"
            + (f" (only '{names[0]}' has scribbles)" if names else " (no scribbled pixels)")
        )
    if not np.all(np.isfinite(x)):
        raise ProbeError("the features contain NaN or infinite values")
    if channel_weights is not None:
        channel_weights = np.asarray(channel_weights, np.float32).reshape(-1)
        if channel_weights.shape != (x.shape[1],) or not np.all(np.isfinite(channel_weights)) \
                or np.any(channel_weights <= 0):
            raise ProbeError(f"channel weights must be {x.shape[1]} positive numbers")
    x, y = subsample_per_class(x, y, params.max_per_class, params.seed)
    if classifier == "linear":
        return _train_linear(x, y, meta, params, previous, channel_weights)
    return _train_forest(x, y, meta, params)


def subsample_per_class(
    x: np.ndarray, y: np.ndarray, max_per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``max_per_class`` random rows of each class (all rows of smaller classes)."""
    if max_per_class is None or max_per_class <= 0:
        return np.ascontiguousarray(x, np.float32), y
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size > max_per_class:
            idx = np.sort(rng.choice(idx, max_per_class, replace=False))
        keep.append(idx)
    sel = np.concatenate(keep)
    return np.ascontiguousarray(x[sel], np.float32), y[sel]


def _class_weights(y: np.ndarray, n_classes: int, balance: bool) -> np.ndarray:
    """Per-sample weights: each present class gets the same total weight when balancing."""
    if not balance:
        return np.ones(y.shape[0], np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(n_classes)
    per_class[present] = y.shape[0] / (present.sum() * counts[present])
    return per_class[y]


def _train_linear(
    x: np.ndarray, y: np.ndarray, meta: ProbeMeta, params: TrainParams,
    previous: Probe | None, channel_weights: np.ndarray | None = None,
) -> LinearProbe:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    mean = x.mean(axis=0).astype(np.float32)
    std = x.std(axis=0).astype(np.float32)
    std = np.where(std > 1e-6 * max(float(std.max()), 1e-12), std, 1.0).astype(np.float32)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    if channel_weights is not None:
        std = (std / channel_weights).astype(np.float32)
    z = (x - mean) / std
    present = np.unique(y)
    C = linear_c(params, meta.feature_mode)
    est = None
    if (isinstance(previous, LinearProbe) and previous._estimator is not None
            and previous.meta.feature_dim == meta.feature_dim
            and previous.meta.class_values == meta.class_values
            and np.array_equal(previous._estimator.classes_, present)):
        est = previous._estimator
        est.set_params(warm_start=True, C=C, max_iter=params.max_iter)
    if est is None:
        est = LogisticRegression(C=C, max_iter=params.max_iter, tol=1e-4)
    # One BLAS thread: these matrices are small, and on a busy machine BLAS threads spinning
    # for each other make the fit 10x slower.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(z, y, sample_weight=_class_weights(y, meta.n_classes, params.balance))
    c, d = meta.n_classes, meta.feature_dim
    weight = np.zeros((c, d), np.float32)
    bias = np.full(c, -1e4, np.float32)  # a class without scribbles is never predicted
    coef = np.asarray(est.coef_, np.float32)
    icpt = np.asarray(est.intercept_, np.float32)
    if coef.shape[0] == 1:  # binary: softmax([-z/2, z/2]) == [1 - sigmoid(z), sigmoid(z)]
        coef = np.concatenate([-coef / 2, coef / 2])
        icpt = np.concatenate([-icpt / 2, icpt / 2])
    weight[est.classes_] = coef
    bias[est.classes_] = icpt
    probe = LinearProbe(meta, weight, bias, mean, std, params={
        "C": C, "balance": params.balance, "max_per_class": params.max_per_class,
        "n_iter": int(np.max(est.n_iter_)), "n_train": int(y.shape[0]),
    })
    probe._estimator = est
    return probe


def _train_forest(
    x: np.ndarray, y: np.ndarray, meta: ProbeMeta, params: TrainParams
) -> ForestProbe:
    from sklearn.ensemble import RandomForestClassifier

    n_jobs = n_threads(params.n_jobs, params.n_estimators)
    rf = RandomForestClassifier(
        n_estimators=params.n_estimators, max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf, max_features=params.max_features,
        n_jobs=n_jobs, random_state=params.seed,
    )
    rf.fit(x, y, sample_weight=_class_weights(y, meta.n_classes, params.balance))
    trees = []
    for est in rf.estimators_:
        t = TreeArrays.from_sklearn(est)
        if t.value.shape[1] != meta.n_classes:  # map the forest's classes onto all classes
            full = np.zeros((t.n_nodes, meta.n_classes))
            full[:, rf.classes_] = t.value
            t.value = full
        trees.append(t)
    return ForestProbe(meta, trees, params={
        "n_estimators": params.n_estimators, "max_depth": params.max_depth,
        "min_samples_leaf": params.min_samples_leaf, "max_features": params.max_features,
        "balance": params.balance, "max_per_class": params.max_per_class,
        "n_train": int(y.shape[0]),
    }, n_jobs=params.n_jobs)

