"""``dinoseg boxes``: unsupervised object boxes for images or folders, written as COCO/VOC/CSV;
``dinoseg boxes-export``: the curated boxes of a folder's project, written the same way.

Twins of the napari "Object boxes" widget's compute-all and export buttons; both use
:func:`headless.boxes.compute.compute_boxes` and :class:`headless.boxes.curation.BoxCuration`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePath
from typing import Any

from headless.cli import CommandError
from headless.cli._batch import add_batch_arguments, file_or_keyword, launch_batch, wants_batch
from headless.cli._types import positive_int

METHOD_CHOICES = ("dino", "lost", "most", "tokencut")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "boxes",
        help="unsupervised object boxes (DINO attention, LOST, MOST, TokenCut) -> COCO/VOC/CSV",
        description=(
            "Find object boxes without labels. Loads the backbone once and processes every "
            "image; non-image files in folders are skipped and listed. The output format "
            "follows --out: .json = COCO, .csv = CSV, a folder (or .xml for one image) = "
            "PASCAL VOC."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders")
    p.add_argument("--method", required=True, choices=METHOD_CHOICES)
    p.add_argument("--backbone", default="dino_vits16",
                   help="backbone name: dino_vits16 (default, the papers'), dino_vits8, "
                        "dino_vitb16, dino_vitb8, dinov2_vits14, ...")
    p.add_argument("--weights", default="official",
                   help="'official' (hub cache / local checkpoint), 'random' (untrained, "
                        "tests only) or a checkpoint file")
    p.add_argument("--size", type=positive_int, default=None,
                   help="resize so the longer side is N pixels (default: original size, as "
                        "the LOST/TokenCut VOC evaluations)")
    p.add_argument("--which", default="auto", choices=("auto", "k", "q", "v", "patch"),
                   help="features fed to LOST/TokenCut/MOST: the last block's k/q/v or the "
                        "final patch tokens; auto (default) = the backbone family's preset "
                        "(k for DINO as the papers, centred patch tokens for DINOv2)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. --param k=100 --param tau=0.2 (values parsed "
                        "as JSON when possible); --param handling=reference|dinov2|auto picks "
                        "the feature-handling preset (default auto: by backbone family)")
    p.add_argument("--image-list", type=Path, default=None, metavar="FILE",
                   help="only the images named in FILE, one per line, by file name or stem "
                        "(e.g. VOC2007/ImageSets/Main/trainval.txt)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    p.add_argument("--out", required=True, type=Path, help="output file or folder")
    p.add_argument("--format", choices=("coco", "voc", "csv"), default=None,
                   help="force the output format instead of guessing it from --out")
    p.add_argument("--project", action="store_true",
                   help="also save each image's boxes in its folder's project (.dinoseg) as "
                        "'automatic', never replacing boxes a user edited or verified")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_batch_arguments(p)
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="with --runner: bf16 forwards (GPUs; CPUs with AMX run them about 3x "
                        "faster); boxes may then differ slightly from float32 (default, as "
                        "the reference methods)")
    p.set_defaults(func=_run_boxes)

    e = sub.add_parser(
        "boxes-export",
        help="export the curated boxes of an image folder's project to COCO/VOC/CSV",
    )
    e.add_argument("folder", type=Path, help="the image folder (its project is FOLDER/.dinoseg)")
    e.add_argument("--out", required=True, type=Path, help="output file or folder")
    e.add_argument("--format", choices=("coco", "voc", "csv"), default=None)
    e.add_argument("--status", action="append", default=None,
                   choices=("automatic", "edited", "verified"),
                   help="only images with this status (repeatable); default all")
    e.set_defaults(func=_run_export)


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["k_patches=100", "tau=0.2", "name=x"]`` -> ``{"k_patches": 100, "tau": 0.2, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def read_image_list(path: Path) -> list[str]:
    """Names from a list file (one per line, blank lines and '#' comments ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CommandError(f"{path}: cannot read the image list ({exc})") from None
    names = [ln.split("#", 1)[0].strip() for ln in lines]
    names = [n.split()[0] for n in names if n]
    if not names:
        raise CommandError(f"{path}: the image list is empty")
    return names


def filter_images(images: list[Path], names: list[str], list_file: Path) -> list[Path]:
    """The images whose file name or stem is listed, in the list's order."""
    by_key: dict[str, Path] = {}
    for p in images:
        by_key.setdefault(p.name, p)
        by_key.setdefault(p.stem, p)
    chosen, missing = [], []
    for n in names:
        p = by_key.get(n) or by_key.get(PurePath(n).name) or by_key.get(PurePath(n).stem)
        (chosen.append(p) if p is not None else missing.append(n))
    if missing:
        print(f"{len(missing)} image(s) of {list_file} not found in the inputs, e.g. "
              f"{', '.join(missing[:5])}", file=sys.stderr)
    if not chosen:
        raise CommandError(f"none of the images listed in {list_file} is among the inputs")
    return list(dict.fromkeys(chosen))


def _run_boxes(args: argparse.Namespace) -> int:
    from headless.boxes import write_boxes
    from headless.boxes.compute import HANDLING_CHOICES, ImageBoxesProgress, compute_boxes
    from headless.images import expand_inputs
    from headless.progress import run_with_tqdm
    from headless.qc.store import save_automatic_boxes

    check_box_output(args.out, args.format)  # before any image is read or model loaded
    listing = expand_inputs(args.inputs)
    images = listing.images
    if args.image_list is not None:
        images = filter_images(images, read_image_list(args.image_list), args.image_list)
    for s in listing.skipped:
        print(f"skipped (not an image): {s}", file=sys.stderr)
    if not images:
        raise CommandError("no images found in " + ", ".join(map(str, args.inputs)))
    if args.size is not None and args.size <= 0:
        raise CommandError(f"--size must be positive, got {args.size}")
    params = parse_params(args.param)
    handling = str(params.pop("handling", "auto"))
    if handling not in HANDLING_CHOICES:
        raise CommandError(f"--param handling= must be one of {', '.join(HANDLING_CHOICES)}, "
                           f"got {handling!r}")
    from headless.boxes.localize import METHOD_FUNCTIONS
    from headless.boxes.localize.params import check_params

    method = args.method.lower()
    if method in METHOD_FUNCTIONS:  # before any model is loaded or image read
        check_params(method, METHOD_FUNCTIONS[method], params)
    if args.precision != "float32" and not wants_batch(args):
        raise CommandError("--precision bf16 needs --runner (the batch path)")
    if wants_batch(args):
        options = {"method": method, "backbone": args.backbone,
                   "weights": file_or_keyword(args.weights),
                   "size": args.size, "which": args.which, "params": params,
                   "handling": handling, "format": args.format, "project": args.project,
                   "precision": args.precision}
        return launch_batch(args, "boxes", images, args.out, options, device=args.device)
    paths = {p.name: p for p in images}

    gen = compute_boxes(images, args.method, backbone=args.backbone, weights=args.weights,
                        device=args.device, size=args.size, which=args.which, params=params,
                        handling=handling, qc=args.project)
    settings: dict[str, Any] = {}

    def saving(g):  # --project: store each result the moment it exists
        result = None
        try:
            while True:
                item = next(g)
                if isinstance(item, ImageBoxesProgress) and item.boxes is not None:
                    details = {"backbone": args.backbone, "which": args.which,
                               "size": args.size, "params": params, "settings": settings}
                    save_automatic_boxes(paths[item.image], item.boxes, item.size,
                                         args.method, details, item.qc)
                yield item
        except StopIteration as stop:
            result = stop.value
        return result

    if args.project:  # resolve the settings before the first image is saved
        from headless.boxes.compute import run_settings
        from headless.features.backbones import get_spec

        spec = get_spec(args.backbone)
        settings.update(run_settings(_Named(args.backbone, spec), args.method, args.which,
                                     handling, params))
    run = run_with_tqdm(saving(gen) if args.project else gen, desc=f"boxes ({args.method})",
                        disable=args.quiet)
    written = write_boxes(args.out, run.boxset, args.format)
    meta = write_settings(args.out, {**run.settings, "size": args.size,
                                     "n_images": len(run.boxset.images)})
    n_img = len(run.boxset.images)
    print(f"{run.boxset.n_boxes} box(es) on {n_img} image(s) with {run.method}, "
          f"{run.backbone_label} -> {args.out}" + (f" ({len(written)} files)"
                                                   if len(written) > 1 else ""))
    print(f"settings: handling={run.settings.get('handling')}, "
          f"features={run.settings.get('which')}, centre={run.settings.get('centre')} "
          f"-> {meta}")
    if run.empty:
        print(f"no foreground found (no box) in {len(run.empty)} image(s): "
              + ", ".join(run.empty), file=sys.stderr)
    if listing.skipped:
        print(f"skipped {len(listing.skipped)} non-image file(s): "
              + ", ".join(p.name for p in listing.skipped), file=sys.stderr)
    for name, msg in run.failures.items():
        print(f"failed: {name}: {msg}", file=sys.stderr)
    if run.failures and not n_img:
        return 2
    return 0


class _Named:
    """A stand-in with a backbone's name and spec, to resolve settings before loading it."""

    def __init__(self, name: str, spec: Any) -> None:
        self.name, self.spec, self.weights_label = name, spec, ""


def check_box_output(out: Path, fmt: str | None) -> None:
    """An output the writer would refuse fails in one line before any image is computed: an
    unknown extension, a file where a folder is wanted (VOC) or the reverse (COCO / CSV), a
    parent that is a file."""
    from headless.boxes.formats.dispatch import detect_format
    from headless.cli._types import check_out_file, check_out_folder

    out = Path(out).expanduser()
    kind = fmt or detect_format(out)
    if kind == "voc" and out.suffix.lower() != ".xml":
        check_out_folder(out)
    else:
        check_out_file(out)
    parent = next((q for q in out.parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CommandError(f"--out {out}: {parent} is a file, not a folder")


def settings_path(out: Path) -> Path:
    """Where a run's settings go: beside the output (``boxes.json`` -> ``boxes.json.meta.json``,
    a VOC folder ``voc/`` -> ``voc.meta.json``)."""
    out = Path(out)
    return out.with_name(out.name.rstrip("/") + ".meta.json")


def write_settings(out: Path, settings: dict[str, Any]) -> Path:
    """Write a run's resolved settings (preset, features, centring, parameters) as JSON."""
    from headless.store import atomic_write_json

    path = settings_path(out)
    atomic_write_json(path, settings)
    return path


def _run_export(args: argparse.Namespace) -> int:
    from headless.boxes.curation import BoxCuration

    if not args.folder.is_dir():
        raise CommandError(f"{args.folder}: not a folder")
    check_box_output(args.out, args.format)
    cur = BoxCuration.for_folder(args.folder)
    boxset, written = cur.export(args.out, fmt=args.format, statuses=args.status)
    print(f"exported {boxset.n_boxes} box(es) on {len(boxset.images)} image(s) -> {args.out}")
    return 0
