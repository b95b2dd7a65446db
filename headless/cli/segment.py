"""``dinoseg segment``: scribbles -> probe -> label TIFFs for images, stacks and folders.

Twin of the napari "Scribble segmentation" dock, on the same engine
(:class:`headless.segment.workflow.Segmenter`, :func:`headless.segment.workflow.apply_to_all`):

    dinoseg segment IMAGE... --scribbles LABELS [LABELS...] --out DIR
    dinoseg segment IMAGE... --probe FILE --out DIR

``--scribbles`` files pair, in order, with the first IMAGE files (a stack pairs with a stack of
scribbles of the same depth); the probe trained on them segments every IMAGE (folders expand to
their images). Each input NAME gives ``DIR/NAME_labels.tif`` whose values are the scribble class
values (e.g. 85/170/255), and with ``--probs`` ``DIR/NAME_proba.tif`` (float32, C x H x W).
Each image's QC record (mean normalised entropy of its probabilities,
:func:`headless.qc.uncertainty.probability_uncertainty`) is saved in its folder's project
(``qc.json``, task "segment") for ``dinoseg qc``.

``--probe FILE --runner local|torchrun|slurm`` applies the probe as a sharded, resumable batch
job (:class:`headless.batch.tasks.segment.SegmentTask`: the same per-image functions,
:mod:`headless.segment.workflow.outputs`); training from scribbles does not run as a job.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from headless.cli import CommandError
from headless.cli._batch import add_batch_arguments, launch_batch, wants_batch
from headless.cli._types import check_out_folder, positive_int

FEATURES = ("classical", "bilinear", "hr", "hybrid", "patch")


def register(sub: Any) -> None:
    from headless.segment.crf import CRFParams
    from headless.segment.probe.training import TrainParams
    from headless.segment.workflow.feature_source import DEFAULT_SCALE, DEFAULT_VIT_WEIGHT

    c, t = CRFParams(), TrainParams()
    p = sub.add_parser(
        "segment",
        help="scribbles -> linear probe / random forest -> label TIFFs (optionally dense CRF)",
        description=(
            "Train a pixel classifier from scribbles (label images: 0 = unlabelled, each other "
            "value a class) and segment images, stacks or folders; or apply a saved probe. "
            "Output labels carry the scribble values."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, stacks or folders")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scribbles", nargs="+", type=Path, metavar="LABELS",
                     help="scribble label images, paired in order with the first IMAGE files")
    src.add_argument("--probe", type=Path, metavar="FILE", help="apply a saved probe (.npz)")
    p.add_argument("--save-probe", type=Path, metavar="FILE",
                   help="save the trained probe (.npz + JSON metadata, no pickle)")
    p.add_argument("--features", choices=FEATURES, default=None,
                   help="classical (no weights needed; default), bilinear, hr (HR-Dv2), "
                        "hybrid (hr + classical), patch")
    p.add_argument("--classifier", choices=("linear", "rf"), default=None,
                   help="linear probe (default for ViT features) or random forest (default for "
                        "classical / hybrid)")
    p.add_argument("--names", default=None, metavar="V=NAME,...",
                   help="class names, e.g. 85=matrix,170=precipitate")
    p.add_argument("--probs", action="store_true", help="also write class probabilities")
    v = p.add_argument_group("ViT features")
    v.add_argument("--backbone", default=None, help="backbone name (default dinov2_vits14_reg)")
    v.add_argument("--weights", default="official",
                   help="'official' (cache folder), 'random' (untrained, tests) or a file")
    v.add_argument("--size", type=positive_int, default=None,
                   help="the ViT sees the image with this longer side (overrides --scale)")
    v.add_argument("--scale", type=float, default=None,
                   help=f"ViT input scale: the ViT sees the image this many times its size "
                        f"(default {DEFAULT_SCALE:g}: 14 px patches are coarse for micrographs; "
                        "1 = native)")
    v.add_argument("--upsample", choices=("bilinear", "nearest-exact"), default=None,
                   help="HR-Dv2: how each copy's patch tokens reach full resolution (default "
                        "bilinear; nearest-exact is the reference's)")
    v.add_argument("--zero-pad", action="store_const", const=False, default=None,
                   dest="whole_patches",
                   help="zero-pad a resized ViT input to whole patches (the reference's rule) "
                        "instead of stretching it to them (default)")
    v.add_argument("--vit-weight", type=float, default=None, dest="vit_weight",
                   help=f"hybrid: weight of the ViT channels against the classical ones after "
                        f"standardisation, for the linear probe (default {DEFAULT_VIT_WEIGHT:g})")
    v.add_argument("--shifts", type=int, choices=(0, 4, 8), default=None,
                   help="HR-Dv2 shift directions (default 4)")
    v.add_argument("--flips", action="store_true", default=None, help="HR-Dv2: also flips")
    v.add_argument("--stride", type=positive_int, default=None, help="patch-embedding stride")
    k = p.add_argument_group("classifier")
    k.add_argument("--no-balance", action="store_true", help="do not balance classes")
    k.add_argument("--max-per-class", type=positive_int, default=t.max_per_class,
                   help=f"training pixels kept per class (default {t.max_per_class})")
    k.add_argument("--C", type=float, default=t.C, dest="C",
                   help="linear probe inverse regularisation (default: 0.01 for hybrid "
                        "features, 0.1 otherwise)")
    k.add_argument("--trees", type=positive_int, default=t.n_estimators,
                   help=f"random forest trees (default {t.n_estimators})")
    k.add_argument("--max-depth", type=int, default=t.max_depth,
                   help=f"random forest depth limit (default {t.max_depth}; 0 = none)")
    k.add_argument("--seed", type=int, default=t.seed)
    r = p.add_argument_group("dense CRF")
    r.add_argument("--crf", action="store_true", help="refine with a dense CRF")
    r.add_argument("--crf-gaussian-sxy", type=float, default=c.gaussian_sxy)
    r.add_argument("--crf-gaussian-compat", type=float, default=c.gaussian_compat)
    r.add_argument("--crf-bilateral-sxy", type=float, default=c.bilateral_sxy)
    r.add_argument("--crf-bilateral-srgb", type=float, default=c.bilateral_srgb)
    r.add_argument("--crf-bilateral-compat", type=float, default=c.bilateral_compat)
    r.add_argument("--crf-iterations", type=positive_int, default=c.iterations)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_batch_arguments(p)
    p.set_defaults(func=_run)


def parse_names(text: str | None) -> dict[int, str]:
    """``"85=matrix,170=blob"`` -> ``{85: "matrix", 170: "blob"}``."""
    out: dict[int, str] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        value, sep, name = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit() or not name.strip():
            raise CommandError(f"--names: expected VALUE=NAME pairs, got {item!r}")
        out[int(value)] = name.strip()
    return out


def batch_options(args: Any, crf: Any) -> dict[str, Any]:
    """The settings of :class:`headless.batch.tasks.segment.SegmentTask` (apply ``--probe``)."""
    from dataclasses import asdict

    weights = Path(str(args.weights)).expanduser()
    if str(args.weights) not in ("official", "random") and weights.exists():
        weights = weights.resolve()
    else:
        weights = args.weights
    return {"probe": str(Path(args.probe).expanduser().resolve()), "weights": str(weights),
            "crf": None if crf is None else asdict(crf), "probs": bool(args.probs)}


def _run(args: Any) -> int:
    from headless.images import expand_inputs, read_image, read_labels
    from headless.progress import run_with_tqdm
    from headless.segment.crf import CRFParams
    from headless.segment.probe.files import load_probe
    from headless.segment.probe.training import TrainParams
    from headless.segment.workflow.apply import apply_to_all
    from headless.segment.workflow.feature_source import FeatureSpec
    from headless.segment.workflow.segmenter import Segmenter, SegmentSettings

    if args.save_probe and args.probe:
        raise CommandError("--save-probe saves a probe trained from --scribbles; with --probe "
                           "the probe already exists")
    check_out_folder(args.out)
    if wants_batch(args) and not args.probe:
        raise CommandError("--runner applies a saved probe to many images: train it first "
                           "(--scribbles ... --save-probe FILE), then run --probe FILE --runner")
    crf = CRFParams(
        gaussian_sxy=args.crf_gaussian_sxy, gaussian_compat=args.crf_gaussian_compat,
        bilateral_sxy=args.crf_bilateral_sxy, bilateral_srgb=args.crf_bilateral_srgb,
        bilateral_compat=args.crf_bilateral_compat, iterations=args.crf_iterations,
    ) if args.crf else None
    train = TrainParams(
        balance=not args.no_balance, max_per_class=args.max_per_class, C=args.C,
        n_estimators=args.trees, max_depth=args.max_depth or None, seed=args.seed,
    )
    vit_opts = {"backbone": args.backbone, "size": args.size, "shifts": args.shifts,
                "flips": args.flips, "stride": args.stride, "scale": args.scale,
                "vit_weight": args.vit_weight, "upsample": args.upsample,
                "whole_patches": args.whole_patches}
    probe = None
    if args.probe:
        probe = load_probe(args.probe)
        spec = FeatureSpec.from_probe(probe, weights=args.weights)
        asked = {k: v for k, v in {"mode": args.features, **vit_opts}.items() if v is not None}
        if asked:  # options given with --probe must describe the probe's own features
            wanted = replace(spec, **asked)
            probe.check_compatible(wanted.mode, wanted.backbone_name,
                                   feature_options=wanted.options())
        if args.classifier and args.classifier != probe.kind:
            raise CommandError(f"--classifier {args.classifier}: the probe is a {probe.kind}")
    else:
        spec = FeatureSpec(mode=args.features or "classical", weights=args.weights,
                           **{k: v for k, v in vit_opts.items() if v is not None})
    settings = SegmentSettings(features=spec, classifier=args.classifier, train=train, crf=crf)
    segmenter = Segmenter(settings)

    listing = expand_inputs(args.inputs)
    for skipped in listing.skipped:
        print(f"skipping {skipped}: not an image file", file=sys.stderr)
    if not listing.images:
        raise CommandError("no image files among the inputs")
    if wants_batch(args):
        return launch_batch(args, "segment", listing.images, args.out,
                            batch_options(args, crf), device="auto", failed_exit=1)

    if probe is None:
        files = [Path(x) for x in args.inputs]
        if len(args.scribbles) > len(files) or any(f.is_dir() for f in files[:len(args.scribbles)]):
            raise CommandError(
                f"{len(args.scribbles)} scribble file(s) need as many IMAGE files before any "
                "folder: each --scribbles file pairs with the IMAGE at the same position"
            )
        pairs = []
        for img_path, scr_path in zip(files, args.scribbles):
            image = read_image(img_path)
            scribbles = read_labels(scr_path)
            pairs.append((image, scribbles))
        try:
            probe = run_with_tqdm(
                segmenter.train(pairs, parse_names(args.names)), desc="training",
                disable=args.quiet,
            )
        except ValueError as exc:
            names = ", ".join(str(s) for s in args.scribbles)
            raise CommandError(f"{names}: {exc}") from exc
        if args.save_probe:
            path = probe.save(args.save_probe)
            print(f"saved probe {path}")
    result = run_with_tqdm(
        apply_to_all(segmenter, probe, listing.images, args.out, save_proba=args.probs, qc=True),
        desc="segmenting", disable=args.quiet,
    )
    values = ", ".join(str(v) for v in probe.meta.class_values)
    for path in result.written:
        print(f"wrote {path} (class values {values})")
    for path in result.probabilities:
        print(f"wrote {path}")
    for name, why in result.skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 1 if result.skipped else 0
