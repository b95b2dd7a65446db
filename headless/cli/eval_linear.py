"""``dinoseg eval-linear``: a linear classifier on frozen features (DINO's linear evaluation).

Features: the CLS of the last ``--n-last-blocks`` blocks (+ average patch token with
``--avgpool``), cached per image; SGD with momentum, lr x batch / 256, cosine to 0; top-1 / 5.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from headless.cli.eval_knn import add_feature_args

    p = sub.add_parser("eval-linear", help="linear evaluation of frozen features (DINO)")
    add_feature_args(p)
    p.add_argument("--n-last-blocks", type=int, default=4,
                   help="ViT: CLS tokens of this many last blocks (DINO: 4 for ViT-S)")
    p.add_argument("--avgpool", action="store_true",
                   help="ViT: append the average patch token (DINO: on for ViT-B)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.001, help="at batch 256 (scaled by batch/256)")
    p.add_argument("--linear-batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headless.cli._types import check_out_file
    from headless.cli.eval_knn import write_result
    from headless.progress import run_with_tqdm
    from headless.train.ssl.evaluation import eval_linear, labelled_features

    check_out_file(args.out)
    feats = run_with_tqdm(labelled_features(
        args.backbone, args.weights, args.data, args.train, args.val, args.size,
        args.batch_size, args.device, mode="linear", n_last_blocks=args.n_last_blocks,
        avgpool=args.avgpool, cache=not args.no_cache), desc="features", disable=args.quiet)
    write_result(eval_linear(feats, args.epochs, args.lr, args.linear_batch_size, args.seed),
                 args.out)
    return 0
