"""Which features a segmentation uses (:class:`FeatureSpec`) and the per-image feature cache.

:class:`FeatureSource` computes features on demand and keeps recent maps keyed by the image's
content hash, so retraining after a stroke only refits the classifier. ViT features too large to
hold (``H * W * D`` floats above ``max_feature_bytes``) are sampled at the scribbled pixels only
(:func:`headless.features.hr_sample`) and predicted through the linear-map path
(:func:`headless.features.hr_linear`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.features.classical import DEFAULT_SIGMAS, classical_features
from headless.progress import Progress, ProgressGen
from headless.segment import DEFAULT_BACKBONE
from headless.segment.probe.meta import LEGACY_OPTIONS
from headless.segment.workflow.scribbles import one_image, spatial_shape
from headless.store import array_hash

if TYPE_CHECKING:  # pragma: no cover
    from headless.features.backbones import Backbone
    from headless.segment.probe.models import Probe

FEATURE_MODES = ("classical", "bilinear", "hr", "hybrid", "patch")
VIT_MODES = ("bilinear", "hr", "hybrid", "patch")
MAX_FEATURE_BYTES = 1024**3  # above this, ViT features are never held whole (linear-map path)
# Defaults of the knobs that shape ViT features for scribble probes (measured on the SEM and TEM
# scribble images with the real DINOv2 ViT-S/14, README "Scribbles to segmentation"): the ViT
# sees the image at twice its size (14 px patches are coarse for micrographs), and in hybrid
# features the ViT block weighs half the classical block in the linear probe (with C 0.01).
DEFAULT_SCALE = 2.0
DEFAULT_VIT_WEIGHT = 0.5
# HR-Dv2 copies are upsampled bilinearly, not nearest-exact as in the reference: with shifts of
# 1 px the nearest copies stay blocky inside each patch (linear probe on scribbles/1: 0.69 -> 0.89).
DEFAULT_UPSAMPLE = "bilinear"


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
    scale: float | None = None  # ViT input scale (1 = native); None -> DEFAULT_SCALE
    vit_weight: float | None = None  # hybrid: ViT block weight; None -> DEFAULT_VIT_WEIGHT
    upsample: str | None = None  # hr / hybrid copies: "bilinear" / "nearest-exact"; None -> default
    # a resized ViT input is stretched to whole patches, not zero-padded (HRConfig.whole_patches)
    whole_patches: bool = True

    def __post_init__(self) -> None:
        if self.mode not in FEATURE_MODES:
            raise ValueError(
                f"unknown feature mode {self.mode!r}; choose one of {', '.join(FEATURE_MODES)}"
            )
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        scale = DEFAULT_SCALE if self.scale is None else float(self.scale)
        if not np.isfinite(scale) or not 0.1 <= scale <= 8:
            raise ValueError(f"scale (ViT input scale) must lie in 0.1..8, got {self.scale}")
        weight = DEFAULT_VIT_WEIGHT if self.vit_weight is None else float(self.vit_weight)
        if not np.isfinite(weight) or weight <= 0:
            raise ValueError(f"vit_weight must be a positive number, got {self.vit_weight}")
        upsample = DEFAULT_UPSAMPLE if self.upsample is None else str(self.upsample)
        if upsample not in ("bilinear", "nearest-exact"):
            raise ValueError(f"upsample must be 'bilinear' or 'nearest-exact', got {upsample!r}")
        object.__setattr__(self, "upsample", upsample)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "vit_weight", weight)

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
            opts.update(size=self.size, stride=self.stride, scale=self.scale,
                        whole_patches=self.whole_patches)
        if self.mode in ("hr", "hybrid"):
            opts.update(shifts=self.shifts, dist=self.dist, flips=self.flips,
                        upsample=self.upsample)
        if self.mode == "hybrid":
            opts["vit_weight"] = self.vit_weight
        return opts

    def model_size(self, image: np.ndarray) -> int | None:
        """The longer side the ViT sees for ``image``: ``size`` if set, else ``scale`` x its own.

        ``None`` means the image's own size (scale 1).
        """
        if self.size:
            return int(self.size)
        if self.scale == 1.0:
            return None
        return max(1, round(float(self.scale) * max(spatial_shape(image))))

    def channel_weights(self, vit_dim: int, dim: int) -> np.ndarray | None:
        """Weights of the ``dim`` feature channels, applied after the probe's standardisation.

        Hybrid features put the ``vit_dim`` ViT channels first: they get ``vit_weight``, the
        classical ones 1, so the linear probe's L2 penalty does not let 384 ViT channels drown
        60 filters. ``None`` (all 1) for other modes.
        """
        if self.mode != "hybrid" or self.vit_weight == 1.0:
            return None
        w = np.ones(int(dim), np.float32)
        w[:int(vit_dim)] = self.vit_weight
        return w

    def vit_arguments(self, image: np.ndarray | None = None) -> tuple[str, dict[str, Any]]:
        """``(mode, keywords)`` of :func:`headless.features.dense.dense_features` /
        :func:`~headless.features.dense.mode_options` for this ViT mode (hybrid's ViT block is
        ``hr``); ``image`` sets the model input size from ``scale`` (see :meth:`model_size`)."""
        mode = "hr" if self.mode == "hybrid" else self.mode
        size = self.size if image is None else self.model_size(image)
        kw: dict[str, Any] = {"size": size, "shifts": self.shifts, "dist": self.dist,
                              "flips": self.flips, "stride": self.stride,
                              "whole_patches": bool(self.whole_patches and size)}
        if mode == "hr":
            kw["upsample"] = self.upsample
        return mode, kw

    def hr_options(self, image: np.ndarray | None = None) -> dict[str, Any]:
        """Options for :mod:`headless.features.highres` (hr_linear / hr_sample) of this ViT mode."""
        from headless.features.dense import mode_options

        mode, kw = self.vit_arguments(image)
        return mode_options(mode, **kw)

    @classmethod
    def from_probe(cls, probe: Probe, **overrides: Any) -> FeatureSpec:
        m = probe.meta
        o = dict(m.feature_options)
        kw: dict[str, Any] = {"mode": m.feature_mode, "backbone": m.backbone}
        for key in ("size", "shifts", "dist", "flips", "stride"):
            if key in o and o[key] is not None:
                kw[key] = o[key]
        for key, legacy in LEGACY_OPTIONS.items():  # probes saved before a knob existed
            kw[key] = o.get(key, legacy) if o.get(key) is not None else legacy
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
                 max_images: int = 4, max_feature_bytes: int | None = None,
                 max_classical_bytes: int | None = None) -> None:
        self.spec = spec
        self._backbone = backbone
        self.max_images = max(1, int(max_images))
        env = os.environ.get("DINOSEG_MAX_FEATURE_BYTES")
        self.max_feature_bytes = int(max_feature_bytes if max_feature_bytes is not None
                                     else (env or MAX_FEATURE_BYTES))
        env = os.environ.get("DINOSEG_MAX_CLASSICAL_BYTES")
        #: above this the filter bank is never held whole (tiles); None: half the memory limit
        self.max_classical_bytes = (int(max_classical_bytes) if max_classical_bytes is not None
                                    else (int(env) if env else None))
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
        """Whether the features of ``image`` are too big to hold whole: ViT features above
        ``max_feature_bytes``, or the classical bank above its own limit (then it is tiled)."""
        if self.spec.mode in ("classical", "hybrid") and self.classical_too_big(image):
            return True
        if not self.spec.uses_vit:
            return False
        h, w = spatial_shape(image)
        return h * w * self.vit_dim() * 4 > self.max_feature_bytes

    def classical_too_big(self, image: np.ndarray) -> bool:
        """Whether the whole filter bank of ``image`` (with its working copies) is over the
        limit: ``max_classical_bytes``, else half of :func:`memory_limit` (what is free now)."""
        from headless.features.classical_tiled import classical_bytes, n_classical

        need = classical_bytes(spatial_shape(image), n_classical(image, self.spec.sigmas))
        return need > self._classical_limit()

    def _classical_limit(self) -> int:
        from headless.features.highres.memory import memory_limit

        if self.max_classical_bytes is not None:
            return self.max_classical_bytes
        return memory_limit() // 2

    def tile_side(self, image: np.ndarray) -> int:
        """Side of the bank's tiles for ``image``: one tile's bank within the limit."""
        from headless.features.classical_tiled import (
            TILE_BYTES,
            classical_halo,
            n_classical,
            tile_side,
        )

        budget = min(TILE_BYTES, self._classical_limit())
        return tile_side(n_classical(image, self.spec.sigmas), classical_halo(self.spec.sigmas),
                         budget)

    def _classical_at(self, image: np.ndarray, rows: np.ndarray, cols: np.ndarray
                      ) -> np.ndarray:
        """The bank at some pixels: tile by tile when the whole bank is too big."""
        if self.classical_too_big(image):
            from headless.features.classical_tiled import classical_features_at

            return classical_features_at(image, rows, cols, self.spec.sigmas,
                                         self.tile_side(image))
        return classical_features(image, self.spec.sigmas)[rows, cols]

    def _classical_linear(self, image: np.ndarray, weight: np.ndarray,
                          bias: np.ndarray | None) -> np.ndarray:
        """``bank @ weight.T (+ bias)``, tile by tile when the whole bank is too big."""
        if self.classical_too_big(image):
            from headless.features.classical_tiled import classical_linear

            return classical_linear(image, weight, bias, self.spec.sigmas,
                                    self.tile_side(image))
        out = np.matmul(classical_features(image, self.spec.sigmas),
                        np.asarray(weight, np.float32).T)
        return out + np.asarray(bias, np.float32) if bias is not None else out

    # -- compute --------------------------------------------------------------------------
    def features(self, image: np.ndarray) -> ProgressGen[np.ndarray]:
        """Full features ``(H, W, D)`` of one 2D image (cached)."""
        image = one_image(image)
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
        mode, kw = s.vit_arguments(image)
        vit = yield from dense_features(image, mode, self.backbone, **kw)
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
        image = one_image(image)
        if not self.too_big(image) or self.cached(image) is not None:
            feats = yield from self.features(image)
            return np.ascontiguousarray(feats[rows, cols], np.float32)
        if self.spec.mode == "classical":
            yield Progress(0, 1, f"filter bank at {len(rows)} scribbled pixels, in tiles")
            return np.ascontiguousarray(self._classical_at(image, rows, cols), np.float32)
        from headless.features.highres import hr_sample_gen

        yield Progress(0, 1, f"sampling HR features at {len(rows)} scribbled pixels")
        vit = yield from hr_sample_gen(self.backbone, image, rows, cols,
                                     **self.spec.hr_options(image))
        if self.spec.mode == "hybrid":
            vit = np.concatenate([vit, self._classical_at(image, rows, cols)], axis=-1)
        return np.ascontiguousarray(vit, np.float32)

    def linear_logits(self, image: np.ndarray, weight: np.ndarray, bias: np.ndarray
                      ) -> ProgressGen[np.ndarray]:
        """``weight @ features + bias`` as ``(H, W, C)`` without holding the ViT features.

        For hybrid features the classical block is multiplied here and the ViT block runs
        through hr_linear: ``W x + b = W_vit x_vit + b + W_cl x_cl``.
        """
        from headless.features.highres import hr_linear

        image = one_image(image)
        if self.spec.mode == "classical":
            yield Progress(0, 1, "linear map over the filter bank, in tiles")
            return self._classical_linear(image, weight, bias)
        dv = self.vit_dim()
        w_vit = np.ascontiguousarray(weight[:, :dv], np.float32)
        out = yield from hr_linear(self.backbone, image, w_vit, bias,
                                   **self.spec.hr_options(image))
        if self.spec.mode == "hybrid":
            out = out + self._classical_linear(image, weight[:, dv:], None)
        return np.asarray(out, np.float32)
