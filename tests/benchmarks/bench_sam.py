"""Seconds per image: SAM automatic masks vs box-prompted masks with the same encoder.

Seed 000 reports 7 h for SAM's automatic masks on CUB against < 15 min for DINO boxes: the
automatic generator decodes a 32 x 32 point grid (1024 prompts, 3 masks each) per image. A box
prompt decodes one prompt on the image embedding, which this project computes once per image
and caches. This script measures, side by side in one run and per image:

- ``encoder``: one image-encoder pass (what every mode pays once per image);
- ``auto``: :func:`headless.sam.automatic_masks`, cold cache (encoder + point grid), SAM's
  default settings (32 points per side, batches of 64, its quality filters);
- ``sam_amg``: segment_anything's own ``SamAutomaticMaskGenerator.generate`` (reference);
- ``box@cached``: :func:`headless.sam.masks_from_boxes` for K boxes on the cached embedding;
- ``box@cold``: the same with an empty cache (encoder + K boxes);

and prints ``box@cached / auto`` (target: <= 1/10 per image).

Weights: random (no checkpoint can be downloaded here). The cost of every step depends on the
architecture and the number of prompts, not on the weights' values -- except the work after the
quality filters (RLE encoding and NMS of the surviving masks), which is larger with real
weights; ``--keep-all`` disables the filters to bound that from above.

Usage: python tests/benchmarks/bench_sam.py [--models test_sam_tiny,vit_b] [--images 2]
       [--boxes 1,10] [--device cpu] [--keep-all]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DINOSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))


def real_images(n: int) -> list[tuple[str, np.ndarray, list]]:
    """Real microscopy images with real object boxes (nuclei instance labels), else synthetic."""
    import tifffile

    from headless.sam import boxes_from_labels

    out = []
    nuc = DATA / "nuclei" / "img2d.tif"
    if nuc.exists():
        img = tifffile.imread(nuc)
        gt = tifffile.imread(DATA / "nuclei" / "mask2d.tif")
        boxes = boxes_from_labels(gt, source="gt")
        out.append(("nuclei/img2d.tif 512x512 u16", img, boxes))
        em = DATA / "em_cells" / "train_stack_small.tif"
        if em.exists():
            stack = tifffile.imread(em)
            for i in range(min(len(stack), n)):
                # nuclei boxes, rescaled, stand in as prompts (the cost does not depend on them)
                s = stack.shape[1] / img.shape[0]
                from dataclasses import replace

                bx = [replace(b, x0=b.x0 * s, y0=b.y0 * s, x1=b.x1 * s, y1=b.y1 * s)
                      for b in boxes]
                out.append((f"em_cells slice {i} 518x518 u8", stack[i], bx))
    rng = np.random.default_rng(0)
    while len(out) < n:
        from headless.boxes import Box

        img = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
        bx = [Box(float(x), float(y), float(x + 80), float(y + 60))
              for x, y in rng.integers(0, 500, (50, 2))]
        out.append(("synthetic 480x640 RGB", img, bx))
    return out[:n]


def bench_model(name: str, images, ks: list[int], device: str, keep_all: bool,
                reference: bool) -> list[dict]:
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from headless.progress import run
    from headless.sam import (
        AutoMaskParams,
        automatic_masks,
        load_sam,
        masks_from_boxes,
        to_uint8_rgb,
    )

    sam = load_sam(name, "random", device=device)
    params = AutoMaskParams(pred_iou_thresh=0.0, stability_score_thresh=0.0) if keep_all \
        else AutoMaskParams()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    # warm-up (first-call kernel selection, lazy imports)
    run(masks_from_boxes(sam, images[0][1][:32, :32], images[0][2][:1]))
    kw = {k: getattr(params, k) for k in (
        "points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
        "box_nms_thresh")}
    rows = []

    def clock(what: str, row: dict, fn) -> None:
        t = time.perf_counter()
        value = fn()
        sync()
        row[what] = time.perf_counter() - t
        print(f"    {name} {row['image']}: {what} {row[what]:.3f}s", flush=True)
        return value

    for label, img, boxes in images:
        row: dict = {"model": name, "image": label}
        sam.clear_cache()
        clock("encoder", row, lambda img=img: sam.embed(img))  # also caches the embedding
        for k in ks:
            clock(f"box{k}@cached", row,
                  lambda k=k, img=img, boxes=boxes: run(masks_from_boxes(sam, img, boxes[:k])))
        sam.clear_cache()
        clock(f"box{ks[-1]}@cold", row,
              lambda img=img, boxes=boxes: run(masks_from_boxes(sam, img, boxes[:ks[-1]])))
        sam.clear_cache()
        ms = clock("auto", row, lambda img=img: run(automatic_masks(sam, img, params)))
        row["n_auto"] = ms.n
        if reference:
            rgb = to_uint8_rgb(img)
            clock("sam_amg", row,
                  lambda rgb=rgb: SamAutomaticMaskGenerator(sam.model, **kw).generate(rgb))
        rows.append(row)
        print_row(row, ks)
    return rows


def print_row(r: dict, ks: list[int]) -> None:
    ref = f" | SAM AMG {r['sam_amg']:7.2f}s" if "sam_amg" in r else ""
    parts = [f"{r['model']:>13} | {r['image']:<30} | enc {r['encoder']:7.2f}s | "
             f"auto {r['auto']:7.2f}s ({r['n_auto']} masks){ref}"]
    for k in ks:
        c = r[f"box{k}@cached"]
        parts.append(f"{k} box(es) on cached embedding {c:6.3f}s = 1/{r['auto'] / c:.0f} of auto")
    k = ks[-1]
    parts.append(f"{k} box(es) incl. encoder {r[f'box{k}@cold']:6.2f}s")
    print(" | ".join(parts), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="test_sam_tiny,vit_b")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--boxes", default="1,10")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep-all", action="store_true",
                    help="no quality filters: every point's masks go through RLE and NMS")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip segment_anything's own generator (saves one auto run per image)")
    args = ap.parse_args()
    import torch

    ks = [int(k) for k in args.boxes.split(",")]
    images = real_images(args.images)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device "
          f"{args.device}; random weights; filters {'off' if args.keep_all else 'SAM defaults'}")
    all_rows = []
    for name in args.models.split(","):
        all_rows += bench_model(name, images, ks, args.device, args.keep_all,
                                not args.no_reference)
    print("\nper model, mean seconds per image:")
    for name in args.models.split(","):
        rs = [r for r in all_rows if r["model"] == name]
        auto = float(np.mean([r["auto"] for r in rs]))
        line = (f"  {name}: encoder {np.mean([r['encoder'] for r in rs]):.2f}s, automatic "
                f"{auto:.2f}s")
        if all("sam_amg" in r for r in rs):
            line += f" (segment_anything's generator {np.mean([r['sam_amg'] for r in rs]):.2f}s)"
        for k in ks:
            c = float(np.mean([r[f"box{k}@cached"] for r in rs]))
            line += (f"; {k} box(es) on the cached embedding {c:.3f}s = {c / auto:.4f} x "
                     f"automatic (1/{auto / c:.0f})")
        k = ks[-1]
        line += f"; {k} box(es) with their own encoder pass " \
                f"{np.mean([r[f'box{k}@cold'] for r in rs]):.2f}s"
        print(line)


if __name__ == "__main__":
    main()
