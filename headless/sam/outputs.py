"""One image's SAM result and files, the same for ``dinoseg sam`` and its batch task.

:func:`sam_image` is the per-image work of the command: masks (automatic or one per box
prompt), with ``--choose attention`` the one mask kept by DINO attention, the image's QC record
(:func:`headless.qc.uncertainty.sam_uncertainty`), and its three files in the output folder:

- ``NAME_sam_labels.tif``: labels image, value ``k`` = mask ``k`` (smaller masks on top);
- ``NAME_sam_masks.tif``: every mask in full, ``(N, H, W)`` uint8 (not written without masks);
- ``NAME_sam.json``: per label its predicted IoU, stability, area, tight box, prompt; the chosen
  mask; the QC record.

It returns a small JSON-able summary (size, the masks' tight boxes, the chosen box, QC) from
which :func:`add_to_boxsets` and :func:`write_sam_boxes` build the run's boxes files
(``sam_boxes`` and ``pseudo_gt``): the interactive loop and the batch merge go through the same
two functions, so their files are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.progress import ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    from headless.boxes import Box, BoxSet
    from headless.sam.automatic import AutoMaskParams
    from headless.sam.masks import MaskSet
    from headless.sam.model import SamModel
    from headless.store import ProjectStore

log = logging.getLogger(__name__)

#: boxes-file suffix per ``--format``
FORMAT_SUFFIX = {"coco": ".json", "csv": ".csv", "voc": ""}


def prompt_boxes(path: str | Path, names: Sequence[str]
                 ) -> tuple[dict[str, list[Box] | None], list[str]]:
    """Box prompts per image file name (matched as the box evaluation does), and the reader's
    warnings (boxes clipped to / dropped outside their image).

    An image the file does not name maps to None; a file naming none of the images is a
    ``ValueError``.
    """
    from headless.boxes import match_image_names, read_boxes

    boxset = read_boxes(path)
    matched = match_image_names(boxset.images, list(names))
    if not matched:
        raise ValueError(
            f"{path}: none of its {len(boxset.images)} image name(s) matches an input image "
            f"(e.g. {', '.join(boxset.images[:3]) or 'no images'})"
        )
    prompts = {n: list(boxset.boxes.get(matched[n], [])) if n in matched else None
               for n in names}
    return prompts, list(boxset.warnings)


def mask_records(ms: MaskSet, choice: Any = None) -> list[dict[str, Any]]:
    """Per-label rows of a MaskSet for the JSON side file."""
    out = []
    boxes = ms.boxes()
    for i in range(ms.n):
        b = boxes[i]
        out.append({
            "label": i + 1,
            "class": ms.classes[i],
            "predicted_iou": float(ms.predicted_iou[i]),
            "stability_score": float(ms.stability_score[i]),
            "area": int(ms.areas[i]),
            "box": None if b is None else [b.x0, b.y0, b.x1, b.y1],
            "prompt": [float(v) for v in ms.prompts[i]],
            "chosen": bool(choice is not None and choice.index == i),
        })
    return out


def sam_qc(ms: MaskSet) -> dict[str, Any]:
    """The image's QC record: area-weighted doubt of its masks (predicted IoU, stability)."""
    from headless.qc.uncertainty import sam_uncertainty

    return sam_uncertainty(ms.predicted_iou.tolist(), ms.stability_score.tolist(),
                           ms.areas.tolist())


def write_sam_files(out: Path, stem: str, path: Path, ms: MaskSet, *, sam: SamModel,
                    params: AutoMaskParams | None, choice: Any = None, backbone: Any = None,
                    keep: float = 0.6, qc: dict[str, Any] | None = None) -> list[Path]:
    """``STEM_sam_labels.tif``, ``STEM_sam_masks.tif`` (when there are masks), ``STEM_sam.json``
    (``params`` None for box prompts)."""
    from headless.store import atomic_write_json, atomic_write_tiff

    h, w = ms.shape
    written = [atomic_write_tiff(out / f"{stem}_sam_labels.tif", ms.labels())]
    if ms.n:  # a (0, H, W) TIFF is not conformant: no masks, no stack
        written.append(atomic_write_tiff(out / f"{stem}_sam_masks.tif",
                                         ms.masks.astype(np.uint8)))
    info: dict[str, Any] = {
        "image": str(path), "size": [w, h], "model": sam.name,
        "weights": sam.weights_label, "kind": ms.kind,
        "params": None if params is None else asdict(params),
        "empty_prompts": ms.empty_prompts,
        "chosen": None if choice is None else {
            "label": choice.index + 1, "rule": choice.rule,
            "iou_with_attention": float(choice.scores[choice.index]),
            "backbone": backbone.name, "backbone_weights": backbone.weights_label,
            "keep": keep,
        },
        "masks": mask_records(ms, choice),
    }
    if qc is not None:
        info["qc"] = qc
    written.append(atomic_write_json(out / f"{stem}_sam.json", info))
    return written


def sam_image(
    sam: SamModel, image: np.ndarray, path: str | Path, out: str | Path, stem: str, *,
    boxes: Sequence[Box] | None = None, params: AutoMaskParams | None = None,
    store: ProjectStore | None = None, backbone: Any = None, keep: float = 0.6,
    size: int | None = None, save_qc: bool = False,
) -> ProgressGen[dict[str, Any]]:
    """One image of ``dinoseg sam``: masks, the chosen mask, QC and the three files.

    ``boxes`` (a list, maybe empty) prompts one mask per box; None runs the automatic generator
    with ``params``. ``store`` caches the SAM embedding (None: no cache); with ``save_qc`` the
    QC record also goes into the image's project (``qc.json``, task "sam"; a project that
    cannot be written is logged, not fatal). ``backbone`` (a loaded DINO) keeps one mask per
    image by attention (``keep``, ``size`` as :func:`headless.sam.attention_for_image`).

    Returns the JSON-able summary :func:`add_to_boxsets` reads: ``size`` ``[w, h]``, ``boxes``
    (tight boxes of the masks), ``chosen`` (None without a backbone, else a list of 0 or 1
    box), ``n_masks``, ``empty_prompts`` and ``qc``.
    """
    from headless.sam.automatic import automatic_masks
    from headless.sam.box_prompts import masks_from_boxes
    from headless.sam.choice import attention_for_image, choose_mask

    path, out = Path(path), Path(out)
    if boxes is not None:
        ms = yield from masks_from_boxes(sam, image, list(boxes), store)
    else:
        ms = yield from automatic_masks(sam, image, params, store)
    choice = None
    if backbone is not None and ms.n and ms.masks.any():
        attn, att_mask = attention_for_image(backbone, image, keep, size)
        choice = choose_mask(ms, attention=attn, attention_mask=att_mask)
    qc = sam_qc(ms)
    write_sam_files(out, stem, path, ms, sam=sam, params=None if boxes is not None else params,
                    choice=choice, backbone=backbone, keep=keep, qc=qc)
    if save_qc:
        from headless.qc.store import save_qc as save_record

        try:
            save_record(path, "sam", qc, store=store)
        except OSError as exc:  # the masks are written; a read-only project only loses QC
            log.warning("%s: QC record not saved (%s)", path.name, exc)
    h, w = ms.shape
    chosen = None
    if backbone is not None:
        chosen = [] if choice is None or choice.box is None else [choice.box.to_dict()]
    return {"size": [w, h], "n_masks": ms.n, "empty_prompts": list(ms.empty_prompts),
            "boxes": [b.to_dict() for b in ms.boxes() if b is not None],
            "chosen": chosen, "qc": qc}


def add_to_boxsets(name: str, result: dict[str, Any], all_boxes: BoxSet,
                   chosen_boxes: BoxSet | None = None) -> None:
    """Add one image's :func:`sam_image` summary to the run's boxes (and pseudo ground truth)."""
    from headless.boxes.types import Box

    size = (int(result["size"][0]), int(result["size"][1]))
    all_boxes.add(name, [Box.from_dict(b) for b in result["boxes"]], size=size)
    if chosen_boxes is not None and result.get("chosen") is not None:
        chosen_boxes.add(name, [Box.from_dict(b) for b in result["chosen"]], size=size)


def write_sam_boxes(out: str | Path, all_boxes: BoxSet, chosen_boxes: BoxSet | None,
                    fmt: str = "coco") -> list[Path]:
    """``sam_boxes`` (every mask's tight box) and, when chosen, ``pseudo_gt`` in ``fmt``."""
    from headless.boxes import write_boxes

    out = Path(out)
    suffix = FORMAT_SUFFIX[fmt]
    written: list[Path] = []
    if all_boxes.images:
        written += list(write_boxes(out / f"sam_boxes{suffix}", all_boxes, fmt))
        if chosen_boxes is not None:
            written += list(write_boxes(out / f"pseudo_gt{suffix}", chosen_boxes, fmt))
    return written
