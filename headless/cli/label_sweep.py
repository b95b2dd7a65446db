"""``dinoseg label-sweep``: k-NN and linear top-1 against labelled images per class.

The seed's benchmark: for 1, 2, 5, 10, 25, 50 ... labels per class (stratified, seeded,
``--repeats`` draws), the backbone's frozen features next to a baseline backbone's
(``--baseline-backbone`` / ``--baseline-weights``), written as CSV and a PNG plot.
"""

from __future__ import annotations

import argparse

from headless.cli._types import check_out_file, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from headless.cli.eval_knn import add_feature_args

    p = sub.add_parser("label-sweep", help="accuracy against labelled images per class")
    add_feature_args(p)
    p.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 5, 10, 25, 50])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=positive_int, default=20)
    p.add_argument("--epochs", type=int, default=100, help="linear classifier epochs")
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--baseline-backbone", default=None)
    p.add_argument("--baseline-weights", default=None)
    p.add_argument("--csv", default="label_sweep.csv")
    p.add_argument("--png", default="label_sweep.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headless.progress import run_with_tqdm
    from headless.train.ssl.evaluation import labelled_features
    from headless.train.ssl.labelled import load_labelled
    from headless.train.ssl.sweep import check_budgets, summarise, sweep, write_outputs

    check_out_file(args.csv, "--csv")
    check_out_file(args.png, "--png")
    lab = load_labelled(args.data, args.train, args.val)
    check_budgets([c for _, c in lab.train], lab.classes, args.budgets)  # before any work
    sets = {}
    pairs = [(args.backbone, args.weights)]
    if args.baseline_backbone or args.baseline_weights:
        pairs.append((args.baseline_backbone or args.backbone, args.baseline_weights))
    for backbone, weights in pairs:
        f = run_with_tqdm(labelled_features(
            backbone, weights, args.data, args.train, args.val, args.size, args.batch_size,
            args.device, cache=not args.no_cache), desc="features", disable=args.quiet)
        sets[f.label] = f
    rows = sweep(sets, args.budgets, args.repeats, args.seed, args.k, args.epochs, args.lr)
    write_outputs(rows, args.csv, args.png)
    for name, (xs, ys) in summarise(rows).items():
        print(name + ": " + ", ".join(f"{x}: {y:.1f}" for x, y in zip(xs, ys, strict=True)))
    print(f"wrote {args.csv} and {args.png}")
    return 0
