"""``dinoseg sam``: Segment Anything masks for images or folders, as label TIFFs and boxes.

Twin of the napari "SAM masks" widget: automatic masks (SAM's point grid and quality filters)
or, with ``--boxes``, one mask per box of a COCO / VOC / CSV file; the same engine functions
(:func:`headless.sam.automatic_masks`, :func:`headless.sam.masks_from_boxes`).

Per image ``NAME`` it writes into ``--out``:

- ``NAME_sam_labels.tif``: labels image, value ``k`` = mask ``k`` (smaller masks on top);
- ``NAME_sam_masks.tif``: every mask in full, a ``(N, H, W)`` uint8 stack (masks overlap;
  not written when an image has no mask);
- ``NAME_sam.json``: per label its predicted IoU, stability score, area, tight box, prompt;

and for all images one boxes file (tight box of every mask; ``sam_boxes.json`` COCO by
default), plus with ``--choose attention`` the one-mask-per-image pseudo ground truth
(``pseudo_gt`` boxes file; the chosen label in each ``NAME_sam.json``). Each image's QC record
(:func:`headless.qc.uncertainty.sam_uncertainty`) is in its ``NAME_sam.json`` and, unless
``--no-cache`` (which leaves the image folder's project alone), in the project's ``qc.json``.

The per-image work is :func:`headless.sam.outputs.sam_image`; ``--runner local|torchrun|slurm``
runs the same function over the images as a sharded, resumable batch job
(:class:`headless.batch.tasks.sam.SamTask`) whose merge writes the same boxes files.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from headless.cli import CommandError
from headless.cli._batch import add_batch_arguments, file_or_keyword, launch_batch, wants_batch
from headless.cli._types import check_out_folder, fraction, positive_int
from headless.sam.outputs import FORMAT_SUFFIX, mask_records  # noqa: F401 - kept importable here


def register(sub: Any) -> None:
    from headless.sam import AutoMaskParams, list_sam_models

    d = AutoMaskParams()
    p = sub.add_parser(
        "sam",
        help="Segment Anything masks (automatic or one per box) -> label TIFFs + boxes file",
        description=(
            "SAM masks for images or folders. Without --boxes: automatic masks from a point "
            "grid with SAM's quality filters. With --boxes FILE (COCO .json, VOC .xml / folder, "
            ".csv): one mask per box of each image. The image encoder runs once per image; "
            "embeddings are cached in the image folder's project (.dinoseg) unless --no-cache."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--boxes", type=Path, default=None, metavar="FILE",
                   help="box prompts: COCO .json, VOC .xml or folder, or .csv (matched to "
                        "images by file name)")
    p.add_argument("--model", default="vit_b",
                   choices=list_sam_models(include_test=True),
                   help="SAM encoder (vit_b, vit_l, vit_h; test_sam_tiny for tests); default "
                        "vit_b")
    p.add_argument("--weights", default="official",
                   help="'official' (cache folder; downloaded if missing and online), "
                        "'random' (untrained, tests only) or a checkpoint file (.pth/.safetensors)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (default cpu)")
    p.add_argument("--format", choices=tuple(FORMAT_SUFFIX), default="coco",
                   help="boxes file format (default coco)")
    p.add_argument("--no-cache", action="store_true",
                   help="leave the image folder's project (.dinoseg) alone: no cached "
                        "embeddings read or written, no QC record saved")
    g = p.add_argument_group("automatic masks (SAM's generator settings)")
    g.add_argument("--points-per-side", type=positive_int, default=d.points_per_side)
    g.add_argument("--points-per-batch", type=positive_int, default=d.points_per_batch)
    g.add_argument("--pred-iou-thresh", type=float, default=d.pred_iou_thresh)
    g.add_argument("--stability-score-thresh", type=float, default=d.stability_score_thresh)
    g.add_argument("--stability-score-offset", type=float, default=d.stability_score_offset)
    g.add_argument("--box-nms-thresh", type=float, default=d.box_nms_thresh)
    g.add_argument("--crop-n-layers", type=int, default=d.crop_n_layers)
    g.add_argument("--crop-nms-thresh", type=float, default=d.crop_nms_thresh)
    g.add_argument("--min-mask-region-area", type=int, default=d.min_mask_region_area)
    c = p.add_argument_group("one mask per image (seed 000's pseudo ground truth)")
    c.add_argument("--choose", choices=("none", "attention"), default="none",
                   help="'attention': keep, per image, the mask with the highest IoU with the "
                        "thresholded DINO attention (ties: highest mean attention inside)")
    c.add_argument("--backbone", default="dino_vits16", help="DINO backbone for --choose")
    c.add_argument("--backbone-weights", default="official",
                   help="its weights: official, random or a file")
    c.add_argument("--keep", type=fraction, default=0.6,
                   help="attention mass kept by the threshold (DINO's rule), default 0.6")
    c.add_argument("--size", type=positive_int, default=None,
                   help="resize the longer side to N for the backbone (default: original)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_batch_arguments(p)
    p.set_defaults(func=_run)


def _params(args: argparse.Namespace):
    from headless.sam import AutoMaskParams

    params = AutoMaskParams(
        points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        stability_score_offset=args.stability_score_offset,
        box_nms_thresh=args.box_nms_thresh, crop_n_layers=args.crop_n_layers,
        crop_nms_thresh=args.crop_nms_thresh, min_mask_region_area=args.min_mask_region_area,
    )
    try:
        params.validate()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return params


def _prompt_boxes(path: Path, images: list[Path]) -> dict[str, list[Any] | None]:
    """Box prompts per image file name (names matched as the box evaluation does)."""
    from headless.sam.outputs import prompt_boxes

    try:
        prompts, warnings = prompt_boxes(path, [p.name for p in images])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for w in warnings:  # boxes clipped to / dropped outside their image
        print(f"warning: {w}", file=sys.stderr)
    return prompts



def batch_options(args: argparse.Namespace, params: Any) -> dict[str, Any]:
    """The command's settings for :class:`headless.batch.tasks.sam.SamTask`."""
    return {"model": args.model, "weights": file_or_keyword(args.weights),
            "format": args.format, "no_cache": bool(args.no_cache),
            "boxes": file_or_keyword(args.boxes), "params": asdict(params),
            "choose": args.choose, "backbone": args.backbone,
            "backbone_weights": file_or_keyword(args.backbone_weights), "keep": args.keep,
            "size": args.size}


def _run(args: argparse.Namespace) -> int:
    from headless.boxes import BoxSet
    from headless.images import ImageError, expand_inputs, output_stems, read_image
    from headless.progress import run_with_tqdm
    from headless.sam import load_sam
    from headless.sam.outputs import add_to_boxsets, sam_image, write_sam_boxes
    from headless.store import ProjectStore

    check_out_folder(args.out)
    listing = expand_inputs(args.inputs)
    images = listing.images
    for s in listing.skipped:
        print(f"skipped (not an image): {s}", file=sys.stderr)
    if not images:
        raise CommandError("no images found in " + ", ".join(map(str, args.inputs)))
    names = [p.name for p in images]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CommandError(f"two inputs share the file name {dup[0]}; outputs are named by it")
    params = _params(args)
    prompts = None
    if args.boxes is not None:
        prompts = _prompt_boxes(args.boxes, images)
    if args.choose == "attention" and not 0.0 < args.keep <= 1.0:
        raise CommandError(f"--keep must lie in (0, 1], got {args.keep}")
    if wants_batch(args):
        return launch_batch(args, "sam", images, args.out, batch_options(args, params),
                            device=args.device)

    sam = load_sam(args.model, args.weights, device=args.device)
    backbone = None
    if args.choose == "attention":
        from headless.features.backbones import load_backbone

        backbone = load_backbone(args.backbone, args.backbone_weights, device=args.device)
    print(f"SAM {sam.name}: {sam.weights_label}", file=sys.stderr)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_boxes = BoxSet()
    chosen_boxes = BoxSet() if backbone is not None else None
    failures: dict[str, str] = {}
    n_masks = 0
    stems = dict(zip(images, output_stems(images)))
    for path in images:
        try:
            image = read_image(path)
        except ImageError as exc:
            failures[path.name] = str(exc)
            continue
        store = None if args.no_cache else ProjectStore.for_image(path)
        boxes = None
        if prompts is not None:
            boxes = prompts[path.name]
            if boxes is None:
                print(f"no boxes for {path.name} in {args.boxes}: no masks", file=sys.stderr)
                boxes = []
        try:
            result = run_with_tqdm(
                sam_image(sam, image, path, out, stems[path], boxes=boxes, params=params,
                          store=store, backbone=backbone, keep=args.keep, size=args.size,
                          save_qc=store is not None),
                desc=f"SAM {path.name}", disable=args.quiet)
        except (ImageError, ValueError) as exc:
            failures[path.name] = str(exc)
            continue
        add_to_boxsets(path.name, result, all_boxes, chosen_boxes)
        if result["empty_prompts"]:
            print(f"{path.name}: {len(result['empty_prompts'])} box(es) lie outside the image; "
                  "their masks are empty", file=sys.stderr)
        n_masks += result["n_masks"]

    done = len(all_boxes.images)
    write_sam_boxes(out, all_boxes, chosen_boxes, args.format)
    print(f"{n_masks} mask(s) on {done} image(s) with SAM {sam.name} -> {out}")
    for name, msg in failures.items():
        print(f"failed: {name}: {msg}", file=sys.stderr)
    return 2 if failures and not done else 0
