"""``dinoseg label-sweep``: k-NN and linear top-1 against labelled images per class.

The seed's benchmark: for 1, 2, 5, 10, 25, 50 ... labels per class (stratified, seeded,
``--repeats`` draws), the backbone's frozen features next to a baseline backbone's
(``--baseline-backbone`` / ``--baseline-weights``) and a supervised model trained from scratch
on the images of the same subsets (``--supervised-arch``, ``--supervised-epochs``; off with
``--no-supervised``; see :mod:`headless.train.ssl.supervised`), written as CSV and a PNG plot.
"""

from __future__ import annotations

import argparse
import sys

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
    from headless.train.ssl.supervised import SUPERVISED_ARCHS

    p.add_argument("--supervised-arch", default="resnet18", choices=SUPERVISED_ARCHS,
                   help="supervised baseline trained from random weights on the same labels")
    p.add_argument("--supervised-epochs", type=positive_int, default=30,
                   help="passes over each labelled subset (AdamW, cosine lr)")
    p.add_argument("--supervised-lr", type=float, default=1e-3)
    p.add_argument("--supervised-size", type=positive_int, default=None,
                   help="input size of the supervised model (default: --size)")
    p.add_argument("--no-supervised", action="store_true",
                   help="only the frozen features' k-NN and linear rows")
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
    supervised = None
    if not args.no_supervised:
        from headless.train.ssl.supervised import ImageBank, SupervisedConfig

        cfg = SupervisedConfig(args.supervised_arch, args.supervised_epochs, args.supervised_lr,
                               batch_size=args.batch_size, device=args.device)
        supervised = (ImageBank.from_labelled(lab, args.supervised_size or args.size), cfg)

    def show(row: dict) -> None:
        if not args.quiet and row["method"] == "supervised":
            print(f"supervised {row['backbone']}: {row['labels_per_class']} per class, "
                  f"repeat {row['repeat']}: {row['top1']:.1f}", file=sys.stderr)

    rows = sweep(sets, args.budgets, args.repeats, args.seed, args.k, args.epochs, args.lr,
                 supervised=supervised, on_row=show)
    write_outputs(rows, args.csv, args.png)
    for name, (xs, ys) in summarise(rows).items():
        print(name + ": " + ", ".join(f"{x}: {y:.1f}" for x, y in zip(xs, ys, strict=True)))
    print(f"wrote {args.csv} and {args.png}")
    return 0
