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
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.features.classical import DEFAULT_SIGMAS, classical_features
from headless.images import ImageError, squeeze_leading
from headless.progress import Progress, ProgressGen
from headless.segment.crf import CRFParams, crf_refine
from headless.segment.probe import (
    LinearProbe,
    Probe,
    ProbeError,
    ProbeMeta,
    TrainParams,
    class_values_array,
    softmax,
    train_probe,
)
from headless.store import array_hash, atomic_write_tiff

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone

FEATURE_MODES = ("classical", "bilinear", "hr", "hybrid", "patch")
VIT_MODES = ("bilinear", "hr", "hybrid", "patch")
DEFAULT_CLASSIFIER = {"classical": "rf", "hybrid": "rf", "hr": "linear", "bilinear": "linear",
                      "patch": "linear"}
DEFAULT_BACKBONE = "dinov2_vits14_reg"
MAX_FEATURE_BYTES = 1024**3  # above this, ViT features are never held whole (linear-map path)


class ScribbleError(ValueError):
    """Scribbles that cannot train a classifier: empty, one class, wrong shape or type."""


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class ClassMap:
    """Scribble values (sorted, non-zero) and their names; index i <-> value ``values[i]``."""

    values: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_scribbles(
        cls, scribbles: np.ndarray | Sequence[np.ndarray], names: dict[int, str] | None = None
    ) -> ClassMap:
        arrays = [scribbles] if isinstance(scribbles, np.ndarray) else list(scribbles)
        vals: set[int] = set()
        for a in arrays:
            a = check_scribbles(a)
            vals.update(int(v) for v in np.unique(a) if v != 0)
        values = tuple(sorted(vals))
        names = names or {}
        return cls(values, tuple(str(names.get(v, f"class {v}")) for v in values))

    def indices(self, labels: np.ndarray) -> np.ndarray:
        """Class index of each labelled value (all values must be classes of this map)."""
        return np.searchsorted(np.asarray(self.values), labels)

    def require_trainable(self) -> None:
        if not self.values:
            raise ScribbleError(
                "no scribbles yet: paint strokes of at least two classes (label values > 0)"
            )
        if len(self.values) < 2:
            raise ScribbleError(
                f"only one class is scribbled ({self.names[0]!r}, value {self.values[0]}): "
                "paint at least one stroke of another class"
            )


def check_scribbles(scribbles: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Scribbles as a non-negative integer array, optionally of the image's spatial ``shape``."""
    s = np.asarray(scribbles)
    if s.dtype == bool:
        s = s.astype(np.uint8)
    if not np.issubdtype(s.dtype, np.integer):
        if not np.issubdtype(s.dtype, np.floating) or not np.all(np.isfinite(s)) or \
                not np.array_equal(s, np.round(s)):
            raise ScribbleError(f"scribbles must be whole numbers (labels), got {s.dtype} values")
        s = s.astype(np.int64)
    if s.size and s.min() < 0:
        raise ScribbleError("scribble values must be 0 (unlabelled) or positive class values")
    if shape is not None and tuple(s.shape) != tuple(shape):
        raise ScribbleError(
            f"the scribbles have shape {tuple(s.shape)} but the image is {tuple(shape)}: "
            "draw the scribbles on this image (same height and width)"
        )
    return s


def image_slices(image: np.ndarray) -> list[np.ndarray]:
    """A 2D image, an RGB(A) image, or a stack of either -> list of 2D (grey or colour) images.

    ``(N, H, W)`` is a stack of N grey slices (as napari shows it), ``(H, W, 3|4)`` one colour
    image, ``(N, H, W, 3|4)`` a stack of colour images.
    """
    a = squeeze_leading(np.asarray(image))
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):
        return [a]
    if a.ndim == 3 or (a.ndim == 4 and a.shape[-1] in (3, 4)):
        return [a[i] for i in range(a.shape[0])]
    raise ImageError(f"expected an image or a stack of images, got shape {a.shape}")


def spatial_shape(image: np.ndarray) -> tuple[int, int]:
    a = np.asarray(image)
    return tuple(a.shape[:2])  # type: ignore[return-value]


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureSpec:
    """Which features, with which options; ``options()`` goes into a saved probe."""

    mode: str = "classical"
    backbone: str | None = None  # ViT modes; None -> DEFAULT_BACKBONE
    weights: str = "official"  # "official", "random" (tests) or a checkpoint path
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS
    size: int | None = None
    shifts: int = 4
    dist: int = 1
    flips: bool = False
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in FEATURE_MODES:
            raise ValueError(
                f"unknown feature mode {self.mode!r}; choose one of {', '.join(FEATURE_MODES)}"
            )
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))

    @property
    def uses_vit(self) -> bool:
        return self.mode in VIT_MODES

    @property
    def backbone_name(self) -> str | None:
        return (self.backbone or DEFAULT_BACKBONE) if self.uses_vit else None

    def options(self) -> dict[str, Any]:
        """Settings that change the feature values (a probe must match them)."""
        opts: dict[str, Any] = {}
        if self.mode in ("classical", "hybrid"):
            opts["sigmas"] = list(self.sigmas)
        if self.uses_vit:
            opts.update(size=self.size, stride=self.stride)
        if self.mode in ("hr", "hybrid"):
            opts.update(shifts=self.shifts, dist=self.dist, flips=self.flips)
        return opts

    def hr_options(self) -> dict[str, Any]:
        """Options for :mod:`headless.features.highres` (hr_linear / hr_sample) of this ViT mode."""
        from headless.features.dense import mode_options

        mode = "hr" if self.mode == "hybrid" else self.mode
        return mode_options(mode, shifts=self.shifts, dist=self.dist, flips=self.flips,
                            stride=self.stride, size=self.size)

    @classmethod
    def from_probe(cls, probe: Probe, **overrides: Any) -> FeatureSpec:
        m = probe.meta
        o = dict(m.feature_options)
        kw: dict[str, Any] = {"mode": m.feature_mode, "backbone": m.backbone}
        for key in ("size", "shifts", "dist", "flips", "stride"):
            if key in o and o[key] is not None:
                kw[key] = o[key]
        if "sigmas" in o:
            kw["sigmas"] = tuple(o["sigmas"])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


class FeatureSource:
    """Features of images under one :class:`FeatureSpec`, computed on demand and cached.

    The cache holds the most recent ``max_images`` feature maps in memory, keyed by the image's
    content hash, so retraining after each stroke never recomputes them. The backbone loads on
    first use (ViT modes only); ``backbone`` may be passed in to share a loaded model.
    """

    def __init__(self, spec: FeatureSpec, backbone: Backbone | None = None,
                 max_images: int = 4, max_feature_bytes: int | None = None) -> None:
        self.spec = spec
        self._backbone = backbone
        self.max_images = max(1, int(max_images))
        env = os.environ.get("DINOSEG_MAX_FEATURE_BYTES")
        self.max_feature_bytes = int(max_feature_bytes if max_feature_bytes is not None
                                     else (env or MAX_FEATURE_BYTES))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    # -- model ----------------------------------------------------------------------------
    @property
    def backbone(self) -> Backbone | None:
        if not self.spec.uses_vit:
            return None
        if self._backbone is None:
            from headless.features.backbones import load_backbone

            self._backbone = load_backbone(self.spec.backbone_name, weights=self.spec.weights)
        return self._backbone

    @property
    def weights_label(self) -> str | None:
        return self._backbone.weights_label if self._backbone is not None else None

    def vit_dim(self) -> int:
        bb = self.backbone
        return int(bb.spec.embed_dim) if bb is not None else 0

    def feature_dim(self, image: np.ndarray) -> int:
        """D for ``image`` without computing anything heavy."""
        from headless.features.classical import classical_feature_names

        colour = np.asarray(image).ndim == 3
        n_cl = len(classical_feature_names(self.spec.sigmas, colour=colour))
        if self.spec.mode == "classical":
            return n_cl
        return self.vit_dim() + (n_cl if self.spec.mode == "hybrid" else 0)

    # -- cache ----------------------------------------------------------------------------
    def key(self, image: np.ndarray) -> str:
        s = self.spec
        return array_hash(np.asarray(image), s.mode, s.backbone_name, s.weights, s.options())

    def cached(self, image: np.ndarray) -> np.ndarray | None:
        k = self.key(image)
        f = self._cache.get(k)
        if f is not None:
            self._cache.move_to_end(k)
        return f

    def clear(self) -> None:
        self._cache.clear()

    def too_big(self, image: np.ndarray) -> bool:
        """Whether full ViT features of ``image`` exceed ``max_feature_bytes``."""
        if not self.spec.uses_vit:
            return False
        h, w = spatial_shape(image)
        return h * w * self.vit_dim() * 4 > self.max_feature_bytes

    # -- compute --------------------------------------------------------------------------
    def features(self, image: np.ndarray) -> ProgressGen[np.ndarray]:
        """Full features ``(H, W, D)`` of one 2D image (cached)."""
        image = _one_image(image)
        k = self.key(image)
        hit = self._cache.get(k)
        if hit is not None:
            self._cache.move_to_end(k)
            return hit
        if self.spec.mode == "classical":
            yield Progress(0, 1, "classical features")
            feats = classical_features(image, self.spec.sigmas)
            yield Progress(1, 1, "classical features")
        else:
            feats = yield from self._vit_features(image)
        self._cache[k] = feats
        while len(self._cache) > self.max_images:
            self._cache.popitem(last=False)
        return feats

    def _vit_features(self, image: np.ndarray) -> ProgressGen[np.ndarray]:
        from headless.features.dense import dense_features

        s = self.spec
        mode = "hr" if s.mode == "hybrid" else s.mode
        vit = yield from dense_features(image, mode, self.backbone, size=s.size, shifts=s.shifts,
                                        dist=s.dist, flips=s.flips, stride=s.stride)
        if s.mode != "hybrid":
            return vit
        cl = classical_features(image, s.sigmas)
        return np.concatenate([vit, cl], axis=-1)

    def sample(self, image: np.ndarray, rows: np.ndarray, cols: np.ndarray
               ) -> ProgressGen[np.ndarray]:
        """Feature rows ``(N, D)`` at pixels ``(rows, cols)``.

        Reads the cached / computed map unless the map is too big to hold, in which case HR
        features are sampled at those pixels only (hr_sample).
        """
        image = _one_image(image)
        if not self.too_big(image) or self.cached(image) is not None:
            feats = yield from self.features(image)
            return np.ascontiguousarray(feats[rows, cols], np.float32)
        from headless.features.highres import hr_sample_gen

        yield Progress(0, 1, f"sampling HR features at {len(rows)} scribbled pixels")
        vit = yield from hr_sample_gen(self.backbone, image, rows, cols, **self.spec.hr_options())
        if self.spec.mode == "hybrid":
            cl = classical_features(image, self.spec.sigmas)[rows, cols]
            vit = np.concatenate([vit, cl], axis=-1)
        return np.ascontiguousarray(vit, np.float32)

    def linear_logits(self, image: np.ndarray, weight: np.ndarray, bias: np.ndarray
                      ) -> ProgressGen[np.ndarray]:
        """``weight @ features + bias`` as ``(H, W, C)`` without holding the ViT features.

        For hybrid features the classical block is multiplied here and the ViT block runs
        through hr_linear: ``W x + b = W_vit x_vit + b + W_cl x_cl``.
        """
        from headless.features.highres import hr_linear

        image = _one_image(image)
        dv = self.vit_dim()
        w_vit = np.ascontiguousarray(weight[:, :dv], np.float32)
        out = yield from hr_linear(self.backbone, image, w_vit, bias, **self.spec.hr_options())
        if self.spec.mode == "hybrid":
            cl = classical_features(image, self.spec.sigmas)
            out = out + np.matmul(cl, weight[:, dv:].T.astype(np.float32))
        return np.asarray(out, np.float32)


def _one_image(image: np.ndarray) -> np.ndarray:
    slices = image_slices(image)
    if len(slices) != 1:
        raise ImageError(f"expected one 2D image, got a stack of {len(slices)}")
    return slices[0]


# --------------------------------------------------------------------------- results


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
        if clf == "rf" and any(self.source.too_big(im) for im, _ in items):
            raise ProbeError(
                "these ViT features are too large to hold in memory for a random forest; "
                "use the linear probe (it predicts through the linear-map path) or a smaller size"
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
        probe = train_probe(x, y, meta, clf, self.settings.train, previous=previous)
        yield Progress(n + 1, n + 1, "trained")
        return probe

    # -- prediction -----------------------------------------------------------------------
    def predict(self, image: np.ndarray, probe: Probe, crf: CRFParams | None | bool = True
                ) -> ProgressGen[Segmentation]:
        """Segment one 2D image with ``probe`` (features computed on demand, then cached).

        ``crf``: ``True`` uses the settings' CRF (if any), ``False``/``None`` none, or params.
        """
        image = _one_image(image)
        params = self.settings.crf if crf is True else (crf or None)
        spec = self.settings.features
        probe.check_compatible(spec.mode, spec.backbone_name, None, spec.options())
        if isinstance(probe, LinearProbe) and self.source.too_big(image) and \
                self.source.cached(image) is None:
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


# --------------------------------------------------------------------------- apply to all


@dataclass
class ApplyResult:
    """What apply-to-all wrote: one entry per input, plus inputs skipped with the reason."""

    written: list[Path] = field(default_factory=list)
    probabilities: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def iter_named_images(sources: Sequence[str | Path | np.ndarray], names: Sequence[str] | None = None
                      ) -> Iterator[tuple[str, np.ndarray | Path]]:
    """``(name, image or path)`` for files, folders (their images) and arrays."""
    from headless.images import list_images

    for i, src in enumerate(sources):
        if isinstance(src, np.ndarray):
            yield (names[i] if names else f"image_{i}"), src
            continue
        p = Path(src)
        if p.is_dir():
            for q in list_images(p).images:
                yield q.name, q
        else:
            yield p.name, p


def apply_to_all(
    segmenter: Segmenter, probe: Probe, sources: Sequence[str | Path | np.ndarray],
    out_dir: str | Path, *, names: Sequence[str] | None = None, save_proba: bool = False,
    crf: CRFParams | None | bool = True, stop_on_error: bool = False,
) -> ProgressGen[ApplyResult]:
    """Segment every image / stack slice of ``sources`` and write label TIFFs into ``out_dir``.

    One ``<stem>_labels.tif`` per input (a stack gives a multi-page TIFF of the same depth),
    values = the probe's class values; ``save_proba`` adds ``<stem>_proba.tif`` float32 with
    axes (C, Y, X) (or (Z, C, Y, X) for a stack). A file that cannot be read or does not match
    the probe is skipped with its reason (or raises with ``stop_on_error``).
    """
    from headless.images import read_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = list(iter_named_images(sources, names))
    result = ApplyResult()
    if not items:
        raise ImageError("no images to segment")
    for i, (name, src) in enumerate(items):
        yield Progress(i, len(items), f"{name} ({i + 1}/{len(items)})")
        try:
            arr = read_image(src) if isinstance(src, Path) else np.asarray(src)
            slices = image_slices(arr)
            segs = []
            for j, sl in enumerate(slices):
                if len(slices) > 1:
                    yield Progress(i, len(items), f"{name}: slice {j + 1}/{len(slices)}")
                segs.append((yield from segmenter.predict(sl, probe, crf)))
        except (ValueError, OSError) as exc:
            if stop_on_error:
                raise
            result.skipped.append((name, str(exc)))
            continue
        stem = Path(name).stem
        labels = np.stack([s.labels for s in segs]) if len(segs) > 1 else segs[0].labels
        result.written.append(atomic_write_tiff(out / f"{stem}_labels.tif", labels))
        if save_proba:
            if len(segs) > 1:
                proba = np.stack([np.moveaxis(s.proba, -1, 0) for s in segs])
                axes = "ZCYX"
            else:
                proba, axes = np.moveaxis(segs[0].proba, -1, 0), "CYX"
            result.probabilities.append(atomic_write_tiff(
                out / f"{stem}_proba.tif", np.ascontiguousarray(proba, np.float32),
                metadata={"axes": axes},
            ))
    yield Progress(len(items), len(items), "done")
    return result


def with_crf(settings: SegmentSettings, crf: CRFParams | None) -> SegmentSettings:
    return replace(settings, crf=crf)


def class_value_dtype(values: Sequence[int]) -> np.dtype:
    return class_values_array(values).dtype
