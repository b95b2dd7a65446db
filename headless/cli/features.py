"""``dinoseg features``: attention maps, DINO's mask and PCA views of images, as PNG and NPZ."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from headless.cli._types import fraction, positive_int
from headless.features.foreground import FG_METHODS
from headless.features.posembed import POS_RESIZE
from headless.features.views import MODES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="attention maps (mean, per head), DINO's thresholded mask and PCA-RGB of features",
        description="Writes, per image, STEM_attn.png, STEM_mask.png, STEM_pca.png "
        "(and STEM_dense_pca.png for dense modes) for viewing, and STEM.npz with the arrays.",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    add_backbone_arguments(p)
    p.add_argument("--size", type=positive_int, default=None,
                   help="resize so the longer side is SIZE px (default: native size)")
    p.add_argument("--keep", type=fraction, default=0.6,
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
    p.add_argument("--foreground", choices=FG_METHODS, default=None,
                   help="also write a foreground mask STEM_foreground.png (fused: features + "
                   "colour in 2 clusters; pca: first component; attention: CLS attention)")
    p.add_argument("--crf", action="store_true", help="refine the foreground with the dense CRF")
    p.add_argument("--clusters", type=int, default=0, metavar="K",
                   help="also write K semantic clusters of the --mode features (STEM_clusters.png)")
    p.add_argument("--colour-weight", type=float, default=0.0,
                   help="clusters: weight of the colour term (0 = off)")
    p.add_argument("--position-weight", type=float, default=0.0,
                   help="clusters: weight of the position term (0 = off)")
    p.add_argument("--foreground-only", action="store_true",
                   help="clusters: cluster only the foreground (needs --foreground)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_backbone_arguments(p: argparse.ArgumentParser) -> None:
    """``--backbone``, ``--weights`` and ``--pos-resize`` (shared by ``features`` and
    ``clusters``)."""
    p.add_argument("--backbone", default="dinov2_vits14",
                   help="backbone name (`dinoseg backbones` lists them)")
    p.add_argument("--weights", default="official",
                   help="'official' (cache / download), 'random' (untrained) or a checkpoint file "
                   "(official, timm or Hugging Face layout)")
    p.add_argument("--pos-resize", choices=POS_RESIZE, default=None,
                   help="position-embedding resizing: 'official' (facebookresearch code; default "
                   "for DINO / DINOv2) or 'timm' (bicubic with antialiasing)")


def check_options(args: argparse.Namespace) -> None:
    """Bad option values fail in one line before any model is loaded."""
    if args.clusters and args.clusters < 2:
        raise ValueError(f"--clusters must be at least 2, got {args.clusters}")
    if args.colour_weight < 0 or args.position_weight < 0:
        raise ValueError("--colour-weight and --position-weight must not be negative")
    if args.foreground_only and not args.foreground:
        raise ValueError("--foreground-only needs --foreground pca or --foreground attention")
    if args.crf and not args.foreground:
        raise ValueError("--crf needs --foreground pca or --foreground attention")
    if not 0.0 < args.keep <= 1.0:
        raise ValueError(f"--keep must lie in (0, 1], got {args.keep}")


def run(args: argparse.Namespace) -> int:
    import sys

    from headless.features.backbones import load_backbone
    from headless.features.views import feature_views
    from headless.images import ImageError, expand_inputs, read_image
    from headless.progress import run_with_tqdm
    from headless.store import atomic_save_npz

    check_options(args)
    listing = expand_inputs(args.images)
    for s in listing.skipped:
        print(f"skipped (not an image): {s}", file=sys.stderr)
    if not listing.images:
        raise ValueError("no images to process")
    backbone = load_backbone(args.backbone, args.weights, device=args.device,
                             pos_resize=args.pos_resize)
    if backbone.is_random:
        print(f"note: {backbone.name} has random (untrained) weights", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dense = {"shifts": args.shifts, "dist": args.dist, "flips": args.flips, "stride": args.stride}
    summary = {"backbone": backbone.name, "weights": backbone.weights_label, "mode": args.mode,
               "pos_resize": backbone.pos_resize, "images": {}, "failed": {}}
    extra = {
        "foreground": args.foreground,
        "foreground_options": {"crf": args.crf} if args.foreground else None,
        "clusters": args.clusters,
        "cluster_options": {"colour_weight": args.colour_weight,
                            "position_weight": args.position_weight,
                            "foreground_only": args.foreground_only},
    }
    from tqdm import tqdm

    from headless.images import output_stems

    stems = dict(zip(listing.images, output_stems(listing.images)))
    names = [p.name for p in listing.images]
    keys = {p: p.name if names.count(p.name) == 1 else stems[p] for p in listing.images}
    for path in tqdm(listing.images, desc="images", disable=args.quiet or len(listing.images) < 2):
        try:
            image = read_image(path)
            if image.ndim == 3 and image.shape[-1] not in (3, 4) and image.shape[0] > 4:
                print(f"{path}: a stack of {image.shape[0]}; using slice 0", file=sys.stderr)
                image = image[0]
            views = run_with_tqdm(
                feature_views(backbone, image, size=args.size, keep=args.keep,
                              pca_foreground=args.pca_foreground, mode=args.mode,
                              dense_options=dense if args.mode != "patch" else None, **extra),
                desc=path.name, disable=args.quiet,
            )
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            summary["failed"][keys[path]] = str(exc)
            continue
        stem = out / stems[path]
        atomic_save_npz(stem.with_suffix(".npz"), **views.arrays())
        meta = {"backbone": backbone.name, "weights": backbone.weights_label}
        save_png(f"{stem}_attn.png", colormap(views.attn_mean), meta)
        save_png(f"{stem}_mask.png", (views.mask * 255).astype(np.uint8), meta)
        save_png(f"{stem}_pca.png", (views.pca * 255).round().astype(np.uint8), meta)
        if views.dense_pca is not None:
            dense_png = (views.dense_pca * 255).round().astype(np.uint8)
            save_png(f"{stem}_dense_pca.png", dense_png, meta)
        if views.foreground is not None:
            save_png(f"{stem}_foreground.png", views.foreground.mask * 255, meta)
        if views.clusters is not None:
            save_png(f"{stem}_clusters.png", label_colours(views.clusters.labels), meta)
        summary["images"][keys[path]] = {"grid": list(views.attn_mean.shape), "notes": views.notes}
        if views.foreground is not None:
            summary["images"][keys[path]]["foreground_fraction"] = float(
                views.foreground.mask.mean())
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


def label_colours(labels: np.ndarray) -> np.ndarray:
    """Labels -> RGB uint8 with fixed, well-separated colours (0 stays black; viewing only)."""
    lab = np.asarray(labels, np.int64)
    golden = (np.arange(lab.max() + 1) * 0.618034) % 1.0
    from skimage.color import hsv2rgb

    table = hsv2rgb(np.stack([golden, np.full_like(golden, 0.7), np.full_like(golden, 0.95)],
                             axis=-1)[None])[0]
    table[0] = 0.0
    return (table[lab] * 255).round().astype(np.uint8)


def save_png(path: str, array: np.ndarray, meta: dict[str, str]) -> None:
    """PNG with the backbone and weights written into its text chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in meta.items():
        info.add_text(k, v)
    Image.fromarray(array).save(path, pnginfo=info)
