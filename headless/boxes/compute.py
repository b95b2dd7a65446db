"""Boxes for one image or many: features -> localisation method -> boxes on the original image.

The one engine behind the napari "compute" buttons and ``dinoseg boxes``. It is a progress
generator (see :mod:`headless.progress`): it loads the backbone once, then yields one
:class:`ImageBoxesProgress` per image carrying that image's boxes (so a front end can save each
result the moment it exists) and returns a :class:`BoxRun`. Unreadable images are recorded in
``BoxRun.failures`` and the run goes on; images where the method finds no foreground are listed
in ``BoxRun.empty``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headless.boxes.types import Box, BoxSet
from headless.images import ImageError, read_image
from headless.progress import Progress, ProgressGen

#: Methods of :func:`headless.boxes.localize.localize`, in the order the GUI lists them.
METHODS = ("lost", "tokencut", "most", "dino")
METHOD_TITLES = {
    "lost": "LOST (one object)",
    "tokencut": "TokenCut (one object)",
    "most": "MOST (several objects)",
    "dino": "DINO attention (seed 000)",
}
#: Features fed to LOST / TokenCut / MOST; "auto" = the backbone family's preset (k for DINO,
#: centred patch tokens for DINOv2; see :mod:`headless.boxes.localize.handling`).
FEATURE_CHOICES = ("auto", "k", "q", "v", "patch")
#: Feature-handling presets: "auto" picks by backbone family.
HANDLING_CHOICES = ("auto", "reference", "dinov2")

ImageInput = str | Path | tuple[str, np.ndarray]


@dataclass(frozen=True)
class ImageBoxesProgress(Progress):
    """Progress that also carries the result for the image just finished (``image`` set)."""

    image: str = ""
    boxes: tuple[Box, ...] | None = None
    size: tuple[int, int] | None = None
    error: str | None = None
    qc: dict[str, Any] | None = None  # the QC record (uncertainty, signals, reasons) when asked


@dataclass
class BoxRun:
    """What a run produced: boxes per image, plus what could not be done and why."""

    boxset: BoxSet
    method: str
    backbone_label: str
    failures: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    backbone: Any = None  # the loaded Backbone, so a front end can reuse it
    settings: dict[str, Any] = field(default_factory=dict)  # resolved preset / features / params


def image_size(image: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of a single 2D image (grey, RGB(A), or channels-first RGB)."""
    a = np.asarray(image)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):
        return int(a.shape[1]), int(a.shape[0])
    if a.ndim == 3 and a.shape[0] in (2, 3, 4):
        return int(a.shape[2]), int(a.shape[1])
    raise ImageError(f"boxes need one 2D image (H, W) or (H, W, 3/4); got shape {a.shape}")


def _clip_all(boxes: Sequence[Box], size: tuple[int, int]) -> list[Box]:
    """Boxes clipped to a ``(width, height)`` image; those left with no area are dropped."""
    out = []
    for b in boxes:
        b = b.clip(*size)
        if b.width > 0 and b.height > 0:
            out.append(b)
    return out


def localize_image(
    backbone: Any,
    image: np.ndarray,
    method: str,
    *,
    which: str = "auto",
    size: int | None = None,
    params: dict[str, Any] | None = None,
    handling: str = "auto",
) -> list[Box]:
    """Boxes of one image, in its original pixel coordinates (empty: no foreground found)."""
    from headless.features.forward import extract_image

    if method not in METHODS:
        raise ValueError(f"unknown box method {method!r}; choose one of {', '.join(METHODS)}")
    check_choices(which, handling)
    image_size(image)  # a clear error for an odd shape before the forward pass
    # float32 as the reference LOST / TokenCut / MOST runs (bf16 autocast changes their seeds)
    feats = extract_image(backbone, image, size=size, autocast=False)
    return boxes_from_features(feats, method, which=which, params=params, handling=handling)


def boxes_from_features(
    feats: Any,
    method: str,
    *,
    which: str = "auto",
    params: dict[str, Any] | None = None,
    handling: str = "auto",
) -> list[Box]:
    """Boxes of one image from its features (a batch of one with ``orig_hw`` set).

    The step after the forward pass, apart so that a batch job (:mod:`headless.batch`) can run
    the forward on many images at once and get exactly the boxes of :func:`localize_image`.
    """
    from headless.boxes.localize import localize

    oh, ow = feats.orig_hw
    # the methods work in network-input pixels and map to the original size themselves
    extra = {} if handling == "auto" else {"handling": handling}  # auto: localize's default
    boxes = localize(method, feats, index=0, which=which, orig_hw=(oh, ow),
                     **extra, **(params or {}))
    return _clip_all(boxes, (ow, oh))


#: Methods run beside the chosen one to measure agreement (cheap: no eigen-solver).
QC_METHODS = ("lost", "dino")


def qc_for_features(
    feats: Any,
    boxes: Sequence[Box],
    method: str,
    *,
    which: str = "auto",
    handling: str = "auto",
) -> dict[str, Any]:
    """The QC record of one image's boxes (:func:`headless.qc.uncertainty.box_uncertainty`).

    Signals: the method's scores, agreement with the other cheap methods run on the same
    features (LOST, DINO attention; no second forward pass), and the share of the CLS
    attention mass inside the boxes.
    """
    from headless.features.forward import grid_to_image
    from headless.qc.uncertainty import box_uncertainty

    oh, ow = feats.orig_hw
    others: dict[str, list[Box]] = {}
    for other in QC_METHODS:
        if other == method:
            continue
        try:
            others[other] = boxes_from_features(feats, other, which=which, handling=handling)
        except ValueError:  # a method that cannot run on these features: no agreement signal
            continue
    attn = feats.attn[0].float().mean(0).numpy()
    attention = grid_to_image(attn, feats, order=1) if attn.size else None
    return box_uncertainty(list(boxes), (ow, oh), attention=attention, other_boxes=others)


def check_choices(which: str, handling: str) -> None:
    """``which`` and ``handling`` are among the choices (a batch job checks them up front)."""
    if which not in FEATURE_CHOICES:
        raise ValueError(f"features must be one of {', '.join(FEATURE_CHOICES)}; got {which!r}")
    if handling not in HANDLING_CHOICES:
        raise ValueError(f"handling must be one of {', '.join(HANDLING_CHOICES)}; "
                         f"got {handling!r}")


def run_settings(backbone: Any, method: str, which: str = "auto", handling: str = "auto",
                 params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a run resolves to (preset, features, centring, parameters), for metadata."""
    from headless.boxes.localize import resolved_settings

    family = getattr(getattr(backbone, "spec", None), "family", None)
    out = resolved_settings(method, family, which, handling, **(params or {}))
    out["backbone"] = getattr(backbone, "name", str(backbone))
    out["weights"] = getattr(backbone, "weights_label", "")
    return out


def _name_and_array(item: ImageInput) -> tuple[str, Path | None, np.ndarray | None]:
    if isinstance(item, tuple):
        return str(item[0]), None, np.asarray(item[1])
    p = Path(item)
    return p.name, p, None


def compute_boxes(
    images: Sequence[ImageInput],
    method: str,
    *,
    backbone: Any = "dino_vits16",
    weights: str | Path | None = "official",
    device: str = "cpu",
    size: int | None = None,
    which: str = "auto",
    params: dict[str, Any] | None = None,
    handling: str = "auto",
    qc: bool = False,
) -> ProgressGen[BoxRun]:
    """Progress generator: boxes for every image (paths, or ``(name, array)`` pairs).

    ``backbone`` is a name for :func:`headless.features.load_backbone` (loaded once, here) or an
    already loaded Backbone. ``size`` resizes each image so its longer side is ``size`` before
    the network (None: the original size, as LOST and TokenCut evaluate VOC); boxes always come
    back in original-image pixels. ``which`` and ``handling`` default to the backbone family's
    preset (DINO v1: the papers' settings; DINOv2: centred patch tokens, attention seeds); the
    resolved choice is in ``BoxRun.settings``. With ``qc`` each progress item also carries the
    image's QC record (:func:`qc_for_features`), from the same forward pass.
    """
    if method not in METHODS:
        raise ValueError(f"unknown box method {method!r}; choose one of {', '.join(METHODS)}")
    check_choices(which, handling)
    items = list(images)
    total = len(items) + 1
    if isinstance(backbone, str):
        yield Progress(0, total, f"loading {backbone}")
        from headless.features.backbones import load_backbone

        backbone = load_backbone(backbone, weights=weights, device=device)
    label = f"{getattr(backbone, 'name', '?')} ({getattr(backbone, 'weights_label', '?')})"
    run = BoxRun(BoxSet(), method, label, backbone=backbone,
                 settings=run_settings(backbone, method, which, handling, params))
    yield Progress(1, total, f"{method}: {len(items)} image(s)")
    for i, item in enumerate(items):
        name, path, arr = _name_and_array(item)
        if name in run.boxset.boxes or name in run.failures:
            raise ValueError(f"two images are named '{name}'; boxes are keyed by file name")
        try:
            if arr is None:
                arr = read_image(path)
            wh = image_size(arr)
            record = None
            if qc:
                from headless.features.forward import extract_image

                feats = extract_image(backbone, arr, size=size, autocast=False)
                boxes = boxes_from_features(feats, method, which=which, params=params,
                                            handling=handling)
                record = qc_for_features(feats, boxes, method, which=which, handling=handling)
            else:
                boxes = localize_image(backbone, arr, method, which=which, size=size,
                                       params=params, handling=handling)
        except ValueError as exc:  # ImageError included: unreadable file, odd shape, too small
            run.failures[name] = str(exc)
            yield ImageBoxesProgress(i + 2, total, f"{name}: failed", image=name,
                                     error=str(exc))
            continue
        run.boxset.add(name, boxes, wh)
        if path is not None:
            run.paths[name] = path
        if not boxes:
            run.empty.append(name)
        yield ImageBoxesProgress(i + 2, total, f"{name}: {len(boxes)} box(es)", image=name,
                                 boxes=tuple(boxes), size=wh, qc=record)
    return run
