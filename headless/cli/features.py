"""``dinoseg features``: attention maps, DINO's mask and PCA views of images, as PNG and NPZ."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from headless.features.views import MODES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="attention maps (mean, per head), DINO's thresholded mask and PCA-RGB of features",
        description="Writes, per image, STEM_attn.png, STEM_mask.png, STEM_pca.png "
        "(and STEM_dense_pca.png for dense modes) for viewing, and STEM.npz with the arrays.",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--backbone", default="dinov2_vits14", help="backbone name (see --list)")
    p.add_argument("--weights", default="official",
                   help="'official' (cache / download), 'random' (untrained) or a checkpoint file")
    p.add_argument("--size", type=int, default=None,
                   help="resize so the longer side is SIZE px (default: native size)")
    p.add_argument("--keep", type=float, default=0.6,
                   help="fraction of attention mass kept by the mask (DINO's default 0.6)")
    p.add_argument("--pca-foreground", action="store_true",
                   help="fit the PCA on foreground (masked) patches only")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--mode", choices=MODES, default="patch",
                   help="also compute dense features at image resolution for a PCA view")
    p.add_argument("--shifts", type=int, choices=(4, 8), default=4, help="HR-Dv2 shift directions")
    p.add_argument("--dist", type=int, default=1, help="HR-Dv2 shift distance in pixels")
    p.add_argument("--flips", action="store_true", help="HR-Dv2: add flipped copies")
    p.add_argument("--stride", type=int, default=None, help="patch-embedding stride (e.g. P/2)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from headless.features.backbones import load_backbone
    from headless.features.views import feature_views
    from headless.images import ImageError, expand_inputs, read_image
    from headless.progress import run_with_tqdm
    from headless.store import atomic_save_npz

    listing = expand_inputs(args.images)
    for s in listing.skipped:
        print(f"skipped (not an image): {s}", file=sys.stderr)
    if not listing.images:
        raise ValueError("no images to process")
    backbone = load_backbone(args.backbone, args.weights, device=args.device)
    if backbone.is_random:
        print(f"note: {backbone.name} has random (untrained) weights", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dense = {"shifts": args.shifts, "dist": args.dist, "flips": args.flips, "stride": args.stride}
    summary = {"backbone": backbone.name, "weights": backbone.weights_label, "mode": args.mode,
               "images": {}, "failed": {}}
    from tqdm import tqdm

    for path in tqdm(listing.images, desc="images", disable=args.quiet or len(listing.images) < 2):
        try:
            image = read_image(path)
            if image.ndim == 3 and image.shape[-1] not in (3, 4) and image.shape[0] > 4:
                print(f"{path}: a stack of {image.shape[0]}; using slice 0", file=sys.stderr)
                image = image[0]
            views = run_with_tqdm(
                feature_views(backbone, image, size=args.size, keep=args.keep,
                              pca_foreground=args.pca_foreground, mode=args.mode,
                              dense_options=dense if args.mode != "patch" else None),
                desc=path.name, disable=args.quiet,
            )
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            summary["failed"][path.name] = str(exc)
            continue
        stem = out / path.stem
        atomic_save_npz(stem.with_suffix(".npz"), **views.arrays())
        meta = {"backbone": backbone.name, "weights": backbone.weights_label}
        save_png(f"{stem}_attn.png", colormap(views.attn_mean), meta)
        save_png(f"{stem}_mask.png", (views.mask * 255).astype(np.uint8), meta)
        save_png(f"{stem}_pca.png", (views.pca * 255).round().astype(np.uint8), meta)
        if views.dense_pca is not None:
            dense = (views.dense_pca * 255).round().astype(np.uint8)
            save_png(f"{stem}_dense_pca.png", dense, meta)
        summary["images"][path.name] = {"grid": list(views.attn_mean.shape), "notes": views.notes}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {len(summary['images'])} image(s) to {out} (weights: {backbone.weights_label})")
    return 1 if summary["failed"] else 0


def colormap(values: np.ndarray) -> np.ndarray:
    """Min-max scaled map -> RGB uint8 with matplotlib-free 'inferno'-like ramp (viewing only)."""
    v = np.asarray(values, np.float64)
    v = (v - v.min()) / (np.ptp(v) or 1.0)
    r = np.clip(1.5 * v, 0, 1)
    g = np.clip(1.5 * v - 0.5, 0, 1)
    b = np.clip(np.sin(np.pi * v) * 0.8 + np.clip(3 * v - 2, 0, 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).round().astype(np.uint8)


def save_png(path: str, array: np.ndarray, meta: dict[str, str]) -> None:
    """PNG with the backbone and weights written into its text chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in meta.items():
        info.add_text(k, v)
    Image.fromarray(array).save(path, pnginfo=info)
