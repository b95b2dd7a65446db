"""``dinoseg features``: attention maps, DINO's mask and PCA views of images, as PNG and NPZ.

Per image :func:`headless.features.views.feature_views`, then :func:`write_feature_outputs`;
``summary.json`` at the end. ``--runner local|torchrun|slurm`` runs the same two functions
over the images as a sharded, resumable batch job
(:class:`headless.batch.tasks.features.FeaturesTask`), whose merge writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from headless.cli._batch import add_batch_arguments, file_or_keyword, launch_batch, wants_batch
from headless.cli._types import check_out_folder, fraction, positive_int
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
    p.add_argument("--stride", type=positive_int, default=None,
                   help="patch-embedding stride (e.g. P/2)")
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
    add_batch_arguments(p)
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


def view_options(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of one image's views, as JSON-able options (the batch task's too)."""
    return {
        "size": args.size, "keep": args.keep, "pca_foreground": bool(args.pca_foreground),
        "mode": args.mode,
        "dense": {"shifts": args.shifts, "dist": args.dist, "flips": bool(args.flips),
                  "stride": args.stride},
        "foreground": args.foreground, "crf": bool(args.crf), "clusters": args.clusters,
        "colour_weight": args.colour_weight, "position_weight": args.position_weight,
        "foreground_only": bool(args.foreground_only),
    }


def view_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """:func:`headless.features.views.feature_views` keywords from :func:`view_options`."""
    o = options
    return {
        "size": o["size"], "keep": o["keep"], "pca_foreground": o["pca_foreground"],
        "mode": o["mode"], "dense_options": dict(o["dense"]) if o["mode"] != "patch" else None,
        "foreground": o["foreground"],
        "foreground_options": {"crf": o["crf"]} if o["foreground"] else None,
        "clusters": o["clusters"],
        "cluster_options": {"colour_weight": o["colour_weight"],
                            "position_weight": o["position_weight"],
                            "foreground_only": o["foreground_only"]},
    }


def first_slice(image: np.ndarray) -> tuple[np.ndarray, int | None]:
    """A stack's first slice (and the stack's depth); other images as they are (None)."""
    if image.ndim == 3 and image.shape[-1] not in (3, 4) and image.shape[0] > 4:
        return image[0], int(image.shape[0])
    return image, None


def summary_keys(images: list[Path]) -> dict[Path, str]:
    """Each image's key in ``summary.json``: its file name, or its output stem where two
    inputs share a name."""
    from headless.images import output_stems

    stems = dict(zip(images, output_stems(images)))
    names = [p.name for p in images]
    return {p: p.name if names.count(p.name) == 1 else stems[p] for p in images}


def write_feature_outputs(out: Path, stem: str, views: Any, backbone: Any) -> dict[str, Any]:
    """One image's ``STEM.npz`` and PNG views; its entry in ``summary.json``."""
    from headless.store import atomic_save_npz

    base = out / stem
    atomic_save_npz(base.with_suffix(".npz"), **views.arrays())
    meta = {"backbone": backbone.name, "weights": backbone.weights_label}
    save_png(f"{base}_attn.png", colormap(views.attn_mean), meta)
    save_png(f"{base}_mask.png", (views.mask * 255).astype(np.uint8), meta)
    save_png(f"{base}_pca.png", (views.pca * 255).round().astype(np.uint8), meta)
    if views.dense_pca is not None:
        dense_png = (views.dense_pca * 255).round().astype(np.uint8)
        save_png(f"{base}_dense_pca.png", dense_png, meta)
    if views.foreground is not None:
        save_png(f"{base}_foreground.png", views.foreground.mask * 255, meta)
    if views.clusters is not None:
        save_png(f"{base}_clusters.png", label_colours(views.clusters.labels), meta)
    entry: dict[str, Any] = {"grid": list(views.attn_mean.shape), "notes": views.notes}
    if views.foreground is not None:
        entry["foreground_fraction"] = float(views.foreground.mask.mean())
    return entry


def new_summary(backbone: Any, mode: str) -> dict[str, Any]:
    return {"backbone": backbone.name, "weights": backbone.weights_label, "mode": mode,
            "pos_resize": backbone.pos_resize, "images": {}, "failed": {}}


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    """``summary.json``: the backbone, and per image its grid and notes (or why it failed)."""
    from headless.store import atomic_write_text

    return atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))



def run(args: argparse.Namespace) -> int:
    import sys

    from headless.features.backbones import load_backbone
    from headless.features.views import feature_views
    from headless.images import ImageError, expand_inputs, output_stems, read_image
    from headless.progress import run_with_tqdm

    check_options(args)
    check_out_folder(args.out)
    listing = expand_inputs(args.images)
    for s in listing.skipped:
        print(f"skipped (not an image): {s}", file=sys.stderr)
    if not listing.images:
        raise ValueError("no images to process")
    options = view_options(args)
    if wants_batch(args):
        options.update(backbone=args.backbone, weights=file_or_keyword(args.weights),
                       pos_resize=args.pos_resize)
        return launch_batch(args, "features", listing.images, Path(args.out), options,
                            device=args.device, failed_exit=1)
    backbone = load_backbone(args.backbone, args.weights, device=args.device,
                             pos_resize=args.pos_resize)
    if backbone.is_random:
        print(f"note: {backbone.name} has random (untrained) weights", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = new_summary(backbone, args.mode)
    from tqdm import tqdm

    stems = dict(zip(listing.images, output_stems(listing.images)))
    keys = summary_keys(listing.images)
    for path in tqdm(listing.images, desc="images", disable=args.quiet or len(listing.images) < 2):
        try:
            image, depth = first_slice(read_image(path))
            if depth is not None:
                print(f"{path}: a stack of {depth}; using slice 0", file=sys.stderr)
            elif image.ndim == 3 and image.shape[0] in (2, 3, 4) and image.shape[-1] > 4:
                shape = " x ".join(map(str, image.shape))
                print(f"note: {path.name}: {shape} read as one colour image (channels first); "
                      "for a stack of slices, pass one slice", file=sys.stderr)
            views = run_with_tqdm(feature_views(backbone, image, **view_kwargs(options)),
                                  desc=path.name, disable=args.quiet)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            summary["failed"][keys[path]] = str(exc)
            continue
        summary["images"][keys[path]] = write_feature_outputs(out, stems[path], views, backbone)
    write_summary(out, summary)
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
