"""``dinoseg predict RUN IMAGES --top 5``: the top classes of a trained fgvc run for new
images, as CSV (``path,class_1,prob_1,...``) on stdout or in ``--out``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from headless.cli._types import check_out_file, check_out_folder, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="top-k classes of a trained fgvc run for images (CSV)")
    p.add_argument("run", help="run folder, its name, a unique prefix, or 'last'")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--top", type=positive_int, default=5, help="classes per image (default 5)")
    p.add_argument("--runs-root", default=None)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--out", default=None, help="CSV file (default: stdout)")
    p.add_argument("--votes", default=None, metavar="DIR",
                   help="also write each image's per-layer vote maps (IELT runs) as "
                        "DIR/<name>_votes.npy, shape (layers, rows, cols): the napari view's twin")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from headless.features.backbones import resolve_device
    from headless.images import expand_inputs
    from headless.jobs.runs import find_run
    from headless.progress import run_with_tqdm
    from headless.train.fgvc.evaluation import predict_iter, predictions_csv

    if args.top < 1:
        raise ValueError(f"--top must be 1 or more, got {args.top}")
    check_out_file(args.out)
    if args.votes:
        check_out_folder(args.votes, "--votes")
    run_dir = find_run(args.run, args.runs_root)
    listing = expand_inputs(args.images)
    for s in listing.skipped:
        print(f"skipped (not an image): {s}", file=sys.stderr)
    preds = run_with_tqdm(predict_iter(run_dir, listing.images, args.top, args.batch_size,
                                       resolve_device(args.device)),
                          desc="predict", disable=args.quiet)
    if args.votes:
        _write_votes(run_dir, listing.images, args.votes, resolve_device(args.device))
    text = predictions_csv(preds)
    if args.out:
        from headless.store import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {len(preds)} predictions to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _write_votes(run_dir: Any, images: list[Any], folder: str, device: str) -> None:
    from pathlib import Path

    import numpy as np

    from headless.images import read_image
    from headless.train.fgvc.build import load_fgvc
    from headless.train.fgvc.votes import explain_image

    run = load_fgvc(run_dir, device)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for path in images:
        view = explain_image(run, read_image(path), device=device)
        np.save(out / f"{Path(path).stem}_votes.npy", view.maps)
    print(f"wrote {len(images)} vote maps to {out}", file=sys.stderr)
