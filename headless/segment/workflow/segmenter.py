"""The :class:`Segmenter`: train a probe from scribbles, segment images, optional dense CRF.

Every step is a progress generator (:mod:`headless.progress`): the GUI runs it in a worker that a
newer stroke can cancel, the CLI drives it with tqdm. Output labels carry the scribble values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from headless.progress import Progress, ProgressGen
from headless.segment import DEFAULT_CLASSIFIER
from headless.segment.crf import CRFParams, crf_refine
from headless.segment.probe.meta import ProbeError, ProbeMeta
from headless.segment.probe.models import LinearProbe, Probe, class_values_array, softmax
from headless.segment.probe.training import TrainParams, train_probe
from headless.segment.workflow.feature_source import FeatureSource, FeatureSpec
from headless.segment.workflow.scribbles import (
    ClassMap,
    ScribbleError,
    check_scribbles,
    image_slices,
    one_image,
    spatial_shape,
)


@dataclass
class Segmentation:
    """Labels (scribble values) and per-class probabilities of one image."""

    labels: np.ndarray  # (H, W), values = class values, dtype class_values_array
    proba: np.ndarray  # (H, W, C) float32, C = len(class_values)
    class_values: list[int]
    class_names: list[str]
    refined: bool = False  # the CRF ran


@dataclass
class SegmentSettings:
    """Everything that shapes a segmentation besides the images and scribbles."""

    features: FeatureSpec = field(default_factory=FeatureSpec)
    classifier: str | None = None  # None -> DEFAULT_CLASSIFIER[mode]
    train: TrainParams = field(default_factory=TrainParams)
    crf: CRFParams | None = None  # None: no CRF

    @property
    def classifier_name(self) -> str:
        return self.classifier or DEFAULT_CLASSIFIER[self.features.mode]


class Segmenter:
    """Train probes from scribbles and segment images, with features cached between calls."""

    def __init__(self, settings: SegmentSettings | None = None,
                 source: FeatureSource | None = None) -> None:
        self.settings = settings or SegmentSettings()
        self.source = source or FeatureSource(self.settings.features)
        if self.source.spec != self.settings.features:
            raise ValueError("the feature source and the settings use different features")

    # -- training -------------------------------------------------------------------------
    def train(
        self, pairs: Iterable[tuple[np.ndarray, np.ndarray]],
        class_names: dict[int, str] | None = None, previous: Probe | None = None,
    ) -> ProgressGen[Probe]:
        """Fit a probe on ``(image, scribbles)`` pairs (stacks are split into slices).

        Slices without scribbles are skipped (their features are never computed).
        """
        items: list[tuple[np.ndarray, np.ndarray]] = []
        for image, scribbles in pairs:
            slices = image_slices(image)
            s = check_scribbles(scribbles)
            s = s[None] if s.ndim == 2 and len(slices) == 1 else s
            shape = (len(slices), *slices[0].shape[:2])
            if tuple(s.shape) != shape:
                hint = shape[1:] if len(slices) == 1 else shape
                raise ScribbleError(
                    f"the scribbles have shape {tuple(np.asarray(scribbles).shape)} but the image "
                    f"is {tuple(hint)}: scribbles must cover the image pixel for pixel"
                )
            items += [(im, sc) for im, sc in zip(slices, s) if np.any(sc)]
        cmap = ClassMap.from_scribbles([sc for _, sc in items] or [np.zeros((1, 1), int)],
                                       class_names)
        cmap.require_trainable()
        spec = self.settings.features
        clf = self.settings.classifier_name
        if clf == "rf" and spec.mode != "classical" and \
                any(self.source.too_big(im) for im, _ in items):
            raise ProbeError(
                "these features are too large to hold in memory for a random forest; use the "
                "linear probe (it predicts through the linear map, in tiles) or a smaller image"
            )
        xs, ys = [], []
        n = len(items)
        for i, (im, sc) in enumerate(items):
            yield Progress(i, n + 1, f"features of training image {i + 1}/{n}")
            rows, cols = np.nonzero(sc)
            y = cmap.indices(sc[rows, cols])
            keep = _subsample_index(y, self.settings.train.max_per_class, seed=i)
            rows, cols, y = rows[keep], cols[keep], y[keep]
            x = yield from self.source.sample(im, rows, cols)
            xs.append(x)
            ys.append(y)
        x = np.concatenate(xs)
        y = np.concatenate(ys)
        yield Progress(n, n + 1, f"training {clf} on {len(y)} pixels")
        meta = ProbeMeta(
            feature_mode=spec.mode, feature_dim=x.shape[1], class_values=list(cmap.values),
            class_names=list(cmap.names), backbone=spec.backbone_name,
            feature_options=spec.options(), weights=self.source.weights_label,
        )
        weights = spec.channel_weights(self.source.vit_dim(), x.shape[1])
        probe = train_probe(x, y, meta, clf, self.settings.train, previous=previous,
                            channel_weights=weights)
        yield Progress(n + 1, n + 1, "trained")
        return probe

    # -- prediction -----------------------------------------------------------------------
    def predict(self, image: np.ndarray, probe: Probe, crf: CRFParams | None | bool = True
                ) -> ProgressGen[Segmentation]:
        """Segment one 2D image with ``probe`` (features computed on demand, then cached).

        ``crf``: ``True`` uses the settings' CRF (if any), ``False``/``None`` none, or params.
        """
        image = one_image(image)
        params = self.settings.crf if crf is True else (crf or None)
        spec = self.settings.features
        probe.check_compatible(spec.mode, spec.backbone_name, None, spec.options())
        check_prediction_memory(spatial_shape(image), len(probe.meta.class_values),
                                crf=params is not None)
        big = self.source.too_big(image) and self.source.cached(image) is None
        if big and spec.mode == "classical":  # any probe, one tile of the bank at a time
            yield Progress(0, 2, "predicting tile by tile")
            proba = self._predict_tiles(image, probe)
        elif big and isinstance(probe, LinearProbe):
            dim = self.source.feature_dim(image)
            probe.check_compatible(feature_dim=dim)
            w, b = probe.folded()
            yield Progress(0, 2, "linear map over HR features")
            logits = yield from self.source.linear_logits(image, w, b)
            proba = softmax(logits, axis=-1)
        else:
            feats = yield from self.source.features(image)
            probe.check_compatible(feature_dim=feats.shape[-1])
            yield Progress(0, 2, "predicting")
            proba = probe.predict_image(feats)
        refined = False
        if params is not None:
            yield Progress(1, 2, "dense CRF")
            proba = crf_refine(image, proba, params)
            refined = True
        yield Progress(2, 2, "done")
        labels = probe.labels_from_proba(proba)
        return Segmentation(labels, proba, list(probe.meta.class_values),
                            list(probe.meta.class_names), refined)

    def _predict_tiles(self, image: np.ndarray, probe: Probe) -> np.ndarray:
        """Class probabilities ``(H, W, C)`` with the filter bank computed per tile (its halo
        makes every tile's values those of the whole image)."""
        from headless.features.classical_tiled import iter_classical_tiles

        h, w = spatial_shape(image)
        proba = np.empty((h, w, len(probe.meta.class_values)), np.float32)
        for inner, feats in iter_classical_tiles(image, self.settings.features.sigmas,
                                                 self.source.tile_side(image)):
            probe.check_compatible(feature_dim=feats.shape[-1])
            proba[inner] = probe.predict_image(feats)
        return proba

    def fit_predict(
        self, image: np.ndarray, scribbles: np.ndarray,
        class_names: dict[int, str] | None = None, previous: Probe | None = None,
    ) -> ProgressGen[tuple[Probe, Segmentation]]:
        """Train on one image's scribbles and segment that image (the live GUI step)."""
        probe = yield from self.train([(image, scribbles)], class_names, previous)
        seg = yield from self.predict(image, probe)
        return probe, seg

    def predict_stack(self, image: np.ndarray, probe: Probe, crf: CRFParams | None | bool = True
                      ) -> ProgressGen[list[Segmentation]]:
        """Segment every slice of a stack (or the one image)."""
        slices = image_slices(image)
        out = []
        for i, sl in enumerate(slices):
            yield Progress(i, len(slices), f"slice {i + 1}/{len(slices)}")
            out.append((yield from self.predict(sl, probe, crf)))
        yield Progress(len(slices), len(slices), "done")
        return out


def check_prediction_memory(shape: tuple[int, int], n_classes: int, crf: bool = False,
                            limit: int | None = None) -> None:
    """Refuse, with the estimate, a prediction whose outputs alone would not fit: per-class
    scores, probabilities and the labels (and the dense CRF's own needs), before any work."""
    from headless.features.highres.memory import MemoryLimitError, _fmt_bytes, memory_limit
    from headless.segment.crf import check_crf_memory

    h, w = shape
    need = int(h) * int(w) * (int(n_classes) * 4 * 3 + 2)
    have = memory_limit(limit)
    if need > have:
        raise MemoryLimitError(
            f"segmenting {h}x{w} px into {n_classes} classes needs about {_fmt_bytes(need)} "
            f"for its outputs and {_fmt_bytes(have)} is available: segment a crop or a "
            "smaller image")
    if crf:
        check_crf_memory(shape, n_classes, limit)


def _subsample_index(y: np.ndarray, max_per_class: int, seed: int = 0) -> np.ndarray:
    """Indices keeping at most ``max_per_class`` pixels of each class (before features)."""
    if not max_per_class or max_per_class <= 0:
        return np.arange(y.shape[0])
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size > max_per_class:
            idx = rng.choice(idx, max_per_class, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep))


# --------------------------------------------------------------------------- convenience


def segment_image(
    image: np.ndarray, scribbles: np.ndarray, *, features: str = "classical",
    classifier: str | None = None, crf: bool | CRFParams = False,
    class_names: dict[int, str] | None = None, train: TrainParams | None = None,
    backbone: str | None = None, weights: str = "official",
) -> ProgressGen[tuple[Probe, Segmentation]]:
    """One call: scribbles on ``image`` -> (probe, segmentation of ``image``)."""
    crf_params = (crf if isinstance(crf, CRFParams) else CRFParams()) if crf else None
    settings = SegmentSettings(
        features=FeatureSpec(mode=features, backbone=backbone, weights=weights),
        classifier=classifier, train=train or TrainParams(), crf=crf_params,
    )
    return (yield from Segmenter(settings).fit_predict(image, scribbles, class_names))


def with_crf(settings: SegmentSettings, crf: CRFParams | None) -> SegmentSettings:
    return replace(settings, crf=crf)


def class_value_dtype(values: Sequence[int]) -> np.dtype:
    return class_values_array(values).dtype
