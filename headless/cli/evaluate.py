"""``dinoseg evaluate RUN --split test``: top-1 / top-5, per-class accuracy and the confusion
matrix of a finished fgvc run on one split of its dataset (the napari view's twin)."""

from __future__ import annotations

import argparse
from typing import Any

from headless.cli._types import check_out_file, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a finished fgvc run on a split of its dataset")
    p.add_argument("run", help="run folder, its name, a unique prefix, or 'last'")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--runs-root", default=None,
                   help="folder of run folders (default $DINOSEG_RUNS or ~/.dinoseg/runs)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--out", default=None,
                   help="write metrics, per-class accuracy and the confusion matrix as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from headless.features.backbones import resolve_device
    from headless.jobs.runs import find_run
    from headless.progress import run_with_tqdm
    from headless.train.fgvc.evaluation import evaluate_run_iter

    check_out_file(args.out)
    run_dir = find_run(args.run, args.runs_root)
    res = run_with_tqdm(evaluate_run_iter(run_dir, args.split, args.batch_size,
                                          resolve_device(args.device)),
                        desc=f"evaluate {args.split}", disable=args.quiet)
    print(f"{run_dir.name} {args.split}: top-1 {res.acc1:.4f}  top-5 {res.acc5:.4f}  "
          f"(n={res.n})")
    recall = res.per_class_recall()
    for name, r, row in zip(res.classes, recall, res.confusion.sum(1)):
        shown = "-" if r is None else f"{r:.4f}"
        print(f"  {name}: {shown} ({int(row)} images)")
    if args.out:
        from headless.store import atomic_write_json

        atomic_write_json(args.out, {"run": str(run_dir), "split": args.split, **res.metrics(),
                                     "classes": res.classes, "per_class_accuracy": recall,
                                     "confusion": res.confusion.astype(int).tolist()})
        print(f"wrote {args.out}")
    return 0
