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
from headless.segment.workflow.scribbles import image_slices
from headless.segment.workflow.segmenter import Segmenter
from headless.store import atomic_write_tiff


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
        stem = stems[i]
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
