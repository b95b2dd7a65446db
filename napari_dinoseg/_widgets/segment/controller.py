"""The scribble dock's state and its calls into the engine, with no Qt or napari in sight.

The panel reads its fields into :class:`DockOptions` and hands the controller plain arrays; the
controller keeps what outlives one run: the class names, the probe, the feature sources (one per
feature spec, so retraining after a stroke never recomputes features, and loaded backbones are
shared between specs) and the run generations. Every run takes a new generation; a result is
shown only if no newer run has been shown already, so a slow run that finishes after a faster,
newer one can never overwrite it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from headless.segment.probe import Probe
    from headless.segment.workflow import FeatureSpec, Segmenter, SegmentSettings

DEFAULT_CLASSES = {1: "background", 2: "foreground"}


@dataclass
class RunResult:
    """A finished run: the probe it trained (or used) and the segmentations it made."""

    generation: int
    probe: Any
    segmentations: list[Any]
    slice_index: tuple[int, ...] | None  # None: every slice of the stack
    image_name: str


@dataclass
class Notice:
    """A run that could not train (e.g. one class so far): shown in the status line only."""

    generation: int
    message: str


@dataclass(frozen=True)
class DockOptions:
    """What the dock's fields say, as plain values; :meth:`settings` makes the engine's settings.

    ``crf`` holds :class:`headless.segment.crf.CRFParams` fields, or None when the CRF is off.
    """

    mode: str = "classical"
    backbone: str = ""
    weights: str = "official"
    shifts: int = 4
    flips: bool = False
    classifier: str | None = None
    balance: bool = True
    crf: dict[str, float] | None = None
    #: feature settings the dock has no field for (ViT input scale, upsampling, ViT weight),
    #: taken from a loaded probe so it reapplies exactly; ``knobs_mode`` is the mode they belong to
    knobs: dict[str, Any] | None = None
    knobs_mode: str | None = None

    def feature_spec(self) -> FeatureSpec:
        from headless.segment.workflow import FeatureSpec

        if self.mode == "classical":
            return FeatureSpec(mode="classical")
        extra = dict(self.knobs or {}) if self.knobs_mode == self.mode else {}
        return FeatureSpec(mode=self.mode, backbone=self.backbone,
                           weights=self.weights.strip() or "official",
                           shifts=int(self.shifts), flips=bool(self.flips), **extra)

    def crf_params(self) -> Any:
        from headless.segment.crf import CRFParams

        return None if self.crf is None else CRFParams(**self.crf)

    def settings(self) -> SegmentSettings:
        from headless.segment.probe import TrainParams
        from headless.segment.workflow import SegmentSettings

        return SegmentSettings(
            features=self.feature_spec(), classifier=self.classifier,
            train=TrainParams(balance=self.balance), crf=self.crf_params(),
        )


def spatial_shape(layer: Any) -> tuple[int, ...]:
    """Shape of an image layer without its colour axis: (H, W) or (N, H, W)."""
    shape = tuple(layer.data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def slice_index(shape: tuple[int, ...], step: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """Index into the leading (stack) axes of ``shape`` of the viewer's ``step`` (of ``ndim``)."""
    lead = len(shape) - 2
    if lead <= 0:
        return ()
    offset = ndim - (lead + 2)
    return tuple(int(np.clip(step[offset + i], 0, shape[i] - 1)) for i in range(lead))


def switch_message(probe: Probe) -> str:
    m = probe.meta
    return (f"switched features to {m.feature_mode}"
            + (f" of {m.backbone}" if m.backbone else "") + " to match the probe")


def needs_feature_switch(probe: Probe, spec: FeatureSpec) -> bool:
    """True when ``probe`` was trained on other features than ``spec`` describes."""
    m = probe.meta
    return m.feature_mode != spec.mode or bool(m.backbone and m.backbone != spec.backbone_name)


def summary(result: RunResult) -> str:
    """The status line after a run: probe, features and the classes of the segmentation."""
    probe, seg = result.probe, result.segmentations[-1]
    parts = [f"{n} ({v})" for v, n in zip(seg.class_values, seg.class_names)]
    return (f"{probe.kind} probe on {probe.meta.feature_mode} features "
            f"({probe.meta.feature_dim} channels): " + ", ".join(parts)
            + (" + CRF" if seg.refined else ""))


class SegmentController:
    """Class names, probe, feature caches and run generations of one scribble dock."""

    def __init__(self) -> None:
        self.probe: Any = None
        self.last_segmentation: Any = None
        from napari_dinoseg._widgets.common.processes import HelperProcess

        self.helper = HelperProcess()  # the CRF runs there; stopped by :meth:`close`
        self.knobs: dict[str, Any] | None = None  # a loaded probe's feature settings (see above)
        self.knobs_mode: str | None = None
        self.phase = ""  # "features" or "fit" while a training run is in that stage
        self.generation = 0
        self.shown_generation = -1
        self._class_names: dict[int, str] = dict(DEFAULT_CLASSES)
        self._sources: dict[Any, Any] = {}
        self._backbones: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ class names
    def class_names(self) -> dict[int, str]:
        return dict(self._class_names)

    def first_class(self) -> int:
        return min(self._class_names) if self._class_names else 1

    def add_class(self, name: str | None = None, value: int | None = None) -> int:
        """Name a class (next free value by default); returns its value."""
        if value is None:
            value = max(self._class_names, default=0) + 1
        self._class_names[int(value)] = name or f"class {value}"
        return int(value)

    def set_class_names(self, names: dict[int, str]) -> None:
        self._class_names = {int(k): str(v) for k, v in names.items() if int(k) > 0}

    def remove_class(self, value: int) -> None:
        self._class_names.pop(value, None)

    def rename_class(self, value: int, text: str) -> None:
        self._class_names[value] = text.strip() or f"class {value}"

    def name_missing(self, values: Iterable[int]) -> bool:
        """Give values without a name a default one ('class 3'); True when any was missing."""
        missing = [v for v in values if v not in self._class_names]
        for v in missing:
            self._class_names[int(v)] = f"class {v}"
        return bool(missing)

    def label_features(self) -> dict[str, list]:
        """``layer.features`` of a scribble layer: napari shows the names next to the values."""
        values = sorted(self._class_names)
        return {"index": [0, *values],
                "class": ["unlabelled", *(self._class_names[v] for v in values)]}

    def classes_json(self) -> dict[str, str]:
        return {str(k): v for k, v in self._class_names.items()}

    def restore_classes(self, saved: Any) -> bool:
        """Take the names saved in ``classes.json``; False (names kept) when they don't parse."""
        if not isinstance(saved, dict):
            return False
        try:
            self._class_names = {int(k): str(v) for k, v in saved.items()}
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------ features and probes
    def segmenter(self, options: DockOptions) -> Segmenter:
        """A Segmenter whose feature cache survives between runs (one cache per feature spec)."""
        from headless.segment.workflow import FeatureSource, Segmenter

        settings = options.settings()
        spec = settings.features
        source = self._sources.get(spec)
        if source is None:
            key = (spec.backbone_name or "", spec.weights)
            source = FeatureSource(spec, backbone=self._backbones.get(key))
            self._sources = {k: v for k, v in list(self._sources.items())[-2:]}
            self._sources[spec] = source
        return Segmenter(settings, source)

    def remember_backbone(self, segmenter: Segmenter) -> None:
        """Keep a backbone the segmenter loaded, for the next feature spec that needs it."""
        bb = getattr(segmenter.source, "_backbone", None)
        if bb is not None:
            spec = segmenter.source.spec
            self._backbones[(spec.backbone_name or "", spec.weights)] = bb

    def probe_mismatch(self, segmenter: Segmenter) -> str | None:
        """Why the probe cannot run on the segmenter's features, or None when it can."""
        from headless.segment.probe import ProbeMismatchError

        spec = segmenter.settings.features
        try:
            self.probe.check_compatible(spec.mode, spec.backbone_name,
                                        feature_options=spec.options())
        except ProbeMismatchError as exc:
            return str(exc)
        return None

    def adopt_probe(self, probe: Probe) -> None:
        """Make ``probe`` current; its class names fill in values that have none yet."""
        m = probe.meta
        for v, n in zip(m.class_values, m.class_names):
            self._class_names.setdefault(int(v), n)
        self.probe = probe
        if m.feature_mode != "classical":
            from headless.segment.workflow import FeatureSpec

            spec = FeatureSpec.from_probe(probe)
            self.knobs = {"scale": spec.scale, "upsample": spec.upsample,
                          "vit_weight": spec.vit_weight}
            self.knobs_mode = m.feature_mode

    # ------------------------------------------------------------------ runs
    def next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def accept(self, result: RunResult | Notice) -> bool:
        """Whether a finished run is still current; a current run's probe becomes the probe.

        Either is dropped when a newer run was shown already (an older run that finished late);
        a notice changes nothing else, so the probe of the last good run stays.
        """
        if isinstance(result, Notice):
            return result.generation >= self.shown_generation
        if result.generation < self.shown_generation:
            return False
        self.shown_generation = result.generation
        self.probe = result.probe
        return True

    def train_job(self, segmenter: Segmenter, image: Any, scribbles: np.ndarray,
                  index: tuple[int, ...], names: dict[int, str], previous: Any,
                  generation: int, image_name: str
                  ) -> Generator[Any, None, RunResult | Notice]:
        """Features of every scribbled slice and the slice on screen, then fit and predict.

        ``phase`` says which stage runs: a newer stroke only quits a run in the "fit" stage,
        so features (cached per image) are never thrown away half done.
        """
        from headless.progress import Progress
        from headless.segment.probe import ProbeError
        from headless.segment.workflow import ScribbleError

        lead = len(index)
        image = np.asarray(image)
        flat_img = image.reshape((-1, *image.shape[lead:])) if lead else image[None]
        flat_scr = scribbles.reshape((-1, *scribbles.shape[lead:])) if lead else scribbles[None]
        current = int(np.ravel_multi_index(index, scribbles.shape[:lead])) if lead else 0
        pairs = [(flat_img[i], flat_scr[i]) for i in range(flat_scr.shape[0])
                 if flat_scr[i].any()]
        spec = segmenter.settings.features
        if spec.mode != "classical" and getattr(segmenter.source, "_backbone", None) is None:
            from napari_dinoseg._widgets.common.models import ensure_official_weights

            yield Progress(0, len(pairs) + 1, "checking the weights")
            ensure_official_weights(spec.backbone_name, spec.weights)
        try:
            self.phase = "features"
            for i, (im, _) in enumerate(pairs + [(flat_img[current], None)]):
                if not segmenter.source.too_big(im):
                    yield Progress(i, len(pairs) + 1, "features")
                    yield from segmenter.source.features(im)
            self.remember_backbone(segmenter)
            self.phase = "fit"
            if previous is not None and previous.kind != segmenter.settings.classifier_name:
                previous = None
            probe = yield from segmenter.train(pairs, names, previous)
            seg = yield from segmenter.predict(flat_img[current], probe, crf=False)
            if segmenter.settings.crf is not None:
                yield Progress(len(pairs), len(pairs) + 1, "dense CRF")
                seg = refine_in_process(self.helper, flat_img[current], seg, probe,
                                        segmenter.settings.crf)
        except (ScribbleError, ProbeError) as exc:
            return Notice(generation, str(exc))
        finally:
            self.phase = ""
        return RunResult(generation, probe, [seg], index, image_name)

    def stack_job(self, segmenter: Segmenter, data: Any, lead: int, probe: Any,
                  generation: int, image_name: str) -> Generator[Any, None, RunResult]:
        """Segment every slice of ``data`` (``lead`` stack axes) with ``probe``."""
        from headless.progress import Progress

        image = np.asarray(data)
        flat = image.reshape((-1, *image.shape[lead:])) if lead else image[None]
        segs = []
        for i in range(flat.shape[0]):
            yield Progress(i, flat.shape[0], f"slice {i + 1}/{flat.shape[0]}")
            segs.append((yield from segmenter.predict(flat[i], probe)))
        self.remember_backbone(segmenter)
        return RunResult(generation, probe, segs, None, image_name)


def refine_in_process(helper: Any, image: np.ndarray, seg: Any, probe: Any, params: Any) -> Any:
    """``seg`` refined by the dense CRF, which runs in ``helper`` (a
    :class:`~napari_dinoseg._widgets.common.processes.HelperProcess`: the CRF holds the GIL)."""
    from headless.segment.crf import crf_refine
    from headless.segment.workflow import Segmentation
    from headless.segment.workflow.scribbles import one_image

    proba = helper.run(crf_refine, one_image(image), seg.proba, params)
    return Segmentation(probe.labels_from_proba(proba), proba, list(seg.class_values),
                        list(seg.class_names), True)
