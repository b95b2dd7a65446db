"""``dinoseg eval-boxes PRED GT``: CorLoc, mean IoU and maIoU of predicted boxes.

PRED and GT may each be a COCO ``.json``, a VOC ``.xml`` file or folder of them (e.g.
``VOC2007/Annotations``), or a ``.csv``; images are matched by file name (or stem).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from headless.cli import CommandError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval-boxes",
        help="CorLoc / mean IoU / maIoU of predicted boxes against ground truth",
        description=(
            "An image counts for CorLoc when any predicted box has IoU >= the threshold with "
            "any ground-truth box (LOST/TokenCut's definition). Mean IoU averages each image's "
            "best IoU; maIoU its asymmetric IoU (intersection over ground-truth area). Images "
            "without ground-truth boxes are not counted; images without predictions count 0."
        ),
    )
    p.add_argument("pred", type=Path, help="predicted boxes: COCO .json, VOC .xml/folder, .csv")
    p.add_argument("gt", type=Path, help="ground truth: COCO .json, VOC .xml/folder, .csv")
    p.add_argument("--threshold", type=float, default=0.5, help="IoU for a hit (default 0.5)")
    p.add_argument("--image-list", type=Path, default=None, metavar="FILE",
                   help="evaluate only these images (one name or stem per line, e.g. "
                        "VOC2007/ImageSets/Main/trainval.txt)")
    p.add_argument("--ignore-difficult", action="store_true",
                   help="drop VOC 'difficult' ground-truth boxes (LOST/TokenCut keep them)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the metrics and per-image scores as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from headless.boxes import evaluate, read_boxes
    from headless.cli.boxes import read_image_list
    from headless.store import atomic_write_json

    if not 0.0 < args.threshold <= 1.0:
        raise CommandError(f"--threshold must lie in (0, 1], got {args.threshold}")
    if args.json is not None and args.json.is_dir():
        raise CommandError(f"--json {args.json} is a folder; give a file name")
    pred = read_boxes(args.pred)
    gt = read_boxes(args.gt)
    for w in pred.warnings + gt.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for w in size_mismatches(pred, gt):
        print(f"warning: {w}", file=sys.stderr)
    images = read_image_list(args.image_list) if args.image_list else None
    result = evaluate(pred, gt, threshold=args.threshold, images=images,
                      ignore_difficult=args.ignore_difficult)
    if result.n_images == 0:
        raise CommandError(f"{args.gt}: no ground-truth image with a box to evaluate")
    print(result.summary())
    if images is not None and result.n_images + len(result.images_without_gt) < len(images):
        print(f"{len(images) - result.n_images - len(result.images_without_gt)} listed "
              "image(s) are not in the ground truth", file=sys.stderr)
    if args.json is not None:
        d = result.to_dict()
        d.update(pred=str(args.pred), gt=str(args.gt))
        atomic_write_json(args.json, d)
        print(f"metrics written to {args.json}")
    return 0


def size_mismatches(pred: Any, gt: Any) -> list[str]:
    """Images whose two files disagree about the image size: their boxes are in other pixels."""
    from headless.boxes import match_image_names

    pairs = match_image_names(pred.sizes, gt.sizes)
    bad = [(p, g) for g, p in pairs.items() if tuple(pred.sizes[p]) != tuple(gt.sizes[g])]
    if not bad:
        return []
    p, g = bad[0]
    (pw, ph), (gw, gh) = pred.sizes[p], gt.sizes[g]
    return [f"{len(bad)} image(s) have another size in the predictions than in the ground truth "
            f"(e.g. {g}: {pw}x{ph} vs {gw}x{gh}); their boxes are in different pixels, so their "
            "scores mean nothing: rescale the predictions or compute them on the original images"]
