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
(``pseudo_gt`` boxes file; the chosen label in each ``NAME_sam.json``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from headless.cli import CommandError
from headless.cli._types import fraction, positive_int

FORMAT_SUFFIX = {"coco": ".json", "csv": ".csv", "voc": ""}


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
                   help="do not read or write embeddings in the image folder's .dinoseg cache")
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


def _prompt_boxes(path: Path, images: list[Path]):
    """Box prompts per image path (names matched as the box evaluation does)."""
    from headless.boxes import match_image_names, read_boxes

    boxset = read_boxes(path)
    for w in boxset.warnings:  # boxes clipped to / dropped outside their image
        print(f"warning: {w}", file=sys.stderr)
    matched = match_image_names(boxset.images, [p.name for p in images])
    if not matched:
        raise CommandError(
            f"{path}: none of its {len(boxset.images)} image name(s) matches an input image "
            f"(e.g. {', '.join(boxset.images[:3]) or 'no images'})"
        )
    return {p: boxset.boxes.get(matched[p.name], []) if p.name in matched else None
            for p in images}, boxset


def mask_records(ms, choice=None) -> list[dict[str, Any]]:
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


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from headless.boxes import BoxSet, write_boxes
    from headless.images import ImageError, expand_inputs, read_image
    from headless.progress import run_with_tqdm
    from headless.sam import automatic_masks, choose_mask, load_sam, masks_from_boxes
    from headless.store import ProjectStore, atomic_write_json, atomic_write_tiff

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
        prompts, _ = _prompt_boxes(args.boxes, images)
    if args.choose == "attention" and not 0.0 < args.keep <= 1.0:
        raise CommandError(f"--keep must lie in (0, 1], got {args.keep}")

    sam = load_sam(args.model, args.weights, device=args.device)
    backbone = None
    if args.choose == "attention":
        from headless.features.backbones import load_backbone

        backbone = load_backbone(args.backbone, args.backbone_weights, device=args.device)
    print(f"SAM {sam.name}: {sam.weights_label}", file=sys.stderr)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_boxes, chosen_boxes = BoxSet(), BoxSet()
    failures: dict[str, str] = {}
    n_masks = 0
    from headless.images import output_stems

    stems = dict(zip(images, output_stems(images)))
    for path in images:
        try:
            image = read_image(path)
        except ImageError as exc:
            failures[path.name] = str(exc)
            continue
        store = None if args.no_cache else ProjectStore.for_image(path)
        try:
            if prompts is not None:
                boxes = prompts[path]
                if boxes is None:
                    print(f"no boxes for {path.name} in {args.boxes}: no masks", file=sys.stderr)
                    boxes = []
                gen = masks_from_boxes(sam, image, boxes, store)
            else:
                gen = automatic_masks(sam, image, params, store)
            ms = run_with_tqdm(gen, desc=f"SAM {path.name}", disable=args.quiet)
        except (ImageError, ValueError) as exc:
            failures[path.name] = str(exc)
            continue
        h, w = ms.shape
        choice = None
        if backbone is not None and ms.n and ms.masks.any():
            from headless.sam import attention_for_image

            attn, att_mask = attention_for_image(backbone, image, args.keep, args.size)
            choice = choose_mask(ms, attention=attn, attention_mask=att_mask)
        stem = stems[path]
        atomic_write_tiff(out / f"{stem}_sam_labels.tif", ms.labels())
        if ms.n:  # a (0, H, W) TIFF is not conformant: no masks, no stack
            atomic_write_tiff(out / f"{stem}_sam_masks.tif", ms.masks.astype(np.uint8))
        atomic_write_json(out / f"{stem}_sam.json", {
            "image": str(path), "size": [w, h], "model": sam.name,
            "weights": sam.weights_label, "kind": ms.kind,
            "params": None if prompts is not None else asdict(params),
            "empty_prompts": ms.empty_prompts,
            "chosen": None if choice is None else {
                "label": choice.index + 1, "rule": choice.rule,
                "iou_with_attention": float(choice.scores[choice.index]),
                "backbone": backbone.name, "backbone_weights": backbone.weights_label,
                "keep": args.keep,
            },
            "masks": mask_records(ms, choice),
        })
        all_boxes.add(path.name, [b for b in ms.boxes() if b is not None], size=(w, h))
        if backbone is not None:
            chosen_boxes.add(path.name, [] if choice is None or choice.box is None
                             else [choice.box], size=(w, h))
        if ms.empty_prompts:
            print(f"{path.name}: {len(ms.empty_prompts)} box(es) lie outside the image; their "
                  "masks are empty", file=sys.stderr)
        n_masks += ms.n

    done = len(all_boxes.images)
    suffix = FORMAT_SUFFIX[args.format]
    if done:
        write_boxes(out / f"sam_boxes{suffix}", all_boxes, args.format)
        if backbone is not None:
            write_boxes(out / f"pseudo_gt{suffix}", chosen_boxes, args.format)
    print(f"{n_masks} mask(s) on {done} image(s) with SAM {sam.name} -> {out}")
    for name, msg in failures.items():
        print(f"failed: {name}: {msg}", file=sys.stderr)
    return 2 if failures and not done else 0
