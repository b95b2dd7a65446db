"""One image of apply-to-all: its slices segmented, its label / probability TIFFs, its QC.

Shared by :func:`headless.segment.workflow.apply.apply_to_all` (the dock's "apply to all" and
``dinoseg segment``) and the batch task :class:`headless.batch.tasks.segment.SegmentTask`, so a
batch run writes the very files the command writes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from headless.progress import Progress, ProgressGen
from headless.segment.crf import CRFParams
from headless.segment.probe.models import Probe
from headless.segment.workflow.scribbles import image_slices
from headless.segment.workflow.segmenter import Segmentation, Segmenter

log = logging.getLogger(__name__)


def segment_slices(segmenter: Segmenter, probe: Probe, image: np.ndarray,
                   crf: CRFParams | None | bool = True, name: str = ""
                   ) -> ProgressGen[list[Segmentation]]:
    """Every slice of ``image`` (one for a 2D / colour image) segmented with ``probe``."""
    slices = image_slices(image)
    segs = []
    for j, sl in enumerate(slices):
        if len(slices) > 1:
            yield Progress(j, len(slices), f"{name}: slice {j + 1}/{len(slices)}")
        segs.append((yield from segmenter.predict(sl, probe, crf)))
    return segs


def write_segmentation(out: str | Path, stem: str, segs: list[Segmentation],
                       save_proba: bool = False) -> tuple[Path, Path | None]:
    """``STEM_labels.tif`` (a stack: one page per slice) and, with ``save_proba``,
    ``STEM_proba.tif`` float32 ``(C, Y, X)`` or ``(Z, C, Y, X)``; the files written."""
    from headless.store import atomic_write_tiff

    out = Path(out)
    labels = np.stack([s.labels for s in segs]) if len(segs) > 1 else segs[0].labels
    labels_path = atomic_write_tiff(out / f"{stem}_labels.tif", labels)
    proba_path = None
    if save_proba:
        if len(segs) > 1:
            proba = np.stack([np.moveaxis(s.proba, -1, 0) for s in segs])
            axes = "ZCYX"
        else:
            proba, axes = np.moveaxis(segs[0].proba, -1, 0), "CYX"
        proba_path = atomic_write_tiff(out / f"{stem}_proba.tif",
                                       np.ascontiguousarray(proba, np.float32),
                                       metadata={"axes": axes})
    return labels_path, proba_path


def segmentation_qc(segs: list[Segmentation]) -> dict[str, Any]:
    """The image's QC record from its class probabilities (every pixel of every slice):
    :func:`headless.qc.uncertainty.probability_uncertainty`."""
    from headless.qc.uncertainty import probability_uncertainty

    probs = np.concatenate([np.moveaxis(s.proba, -1, 0) for s in segs], axis=1)  # (C, Z*H, W)
    return probability_uncertainty(probs)


def save_segment_qc(path: str | Path, qc: dict[str, Any]) -> Path | None:
    """Save the record in the image's project (``qc.json``, task "segment"); a project that
    cannot be written is logged, not fatal (the labels are written already)."""
    from headless.qc.store import save_qc

    try:
        return save_qc(path, "segment", qc)
    except OSError as exc:
        log.warning("%s: QC record not saved (%s)", Path(path).name, exc)
        return None
