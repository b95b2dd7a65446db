"""Apply to all: segment every image (or stack slice) of files, folders or arrays with one probe.

Writes ``<stem>_labels.tif`` per input (and ``<stem>_proba.tif`` on request) into a folder; an
input that cannot be read or does not match the probe is skipped with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headless.images import ImageError
from headless.progress import Progress, ProgressGen
from headless.segment.crf import CRFParams
from headless.segment.probe.models import Probe
from headless.segment.workflow.outputs import (
    save_segment_qc,
    segment_slices,
    segmentation_qc,
    write_segmentation,
)
from headless.segment.workflow.segmenter import Segmenter


@dataclass
class ApplyResult:
    """What apply-to-all wrote: one entry per input, plus inputs skipped with the reason."""

    written: list[Path] = field(default_factory=list)
    probabilities: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    qc: dict[str, dict] = field(default_factory=dict)  # name -> QC record (with ``qc=True``)


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
    crf: CRFParams | None | bool = True, stop_on_error: bool = False, qc: bool = False,
) -> ProgressGen[ApplyResult]:
    """Segment every image / stack slice of ``sources`` and write label TIFFs into ``out_dir``.

    One ``<stem>_labels.tif`` per input (a stack gives a multi-page TIFF of the same depth),
    values = the probe's class values; ``save_proba`` adds ``<stem>_proba.tif`` float32 with
    axes (C, Y, X) (or (Z, C, Y, X) for a stack). A file that cannot be read or does not match
    the probe is skipped with its reason (or raises with ``stop_on_error``). ``qc`` adds each
    image's QC record (:func:`~headless.segment.workflow.outputs.segmentation_qc`) to
    ``result.qc`` and, for files, saves it in the image's project (``qc.json``). The per-image
    work is :mod:`headless.segment.workflow.outputs` (the batch task's too).
    """
    from headless.images import output_stems, read_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = list(iter_named_images(sources, names))
    result = ApplyResult()
    if not items:
        raise ImageError("no images to segment")
    stems = output_stems([src if isinstance(src, Path) else Path(name) for name, src in items])
    for i, (name, src) in enumerate(items):
        yield Progress(i, len(items), f"{name} ({i + 1}/{len(items)})")
        try:
            arr = read_image(src) if isinstance(src, Path) else np.asarray(src)
            segs = yield from segment_slices(segmenter, probe, arr, crf, name)
        except (ValueError, OSError) as exc:
            if stop_on_error:
                raise
            result.skipped.append((name, str(exc)))
            continue
        labels_path, proba_path = write_segmentation(out, stems[i], segs, save_proba)
        result.written.append(labels_path)
        if proba_path is not None:
            result.probabilities.append(proba_path)
        if qc:
            record = result.qc[name] = segmentation_qc(segs)
            if isinstance(src, Path):
                save_segment_qc(src, record)
    yield Progress(len(items), len(items), "done")
    return result
