"""``dinoseg eval-knn``: weighted k-NN accuracy of a backbone's features on train / val folders.

DINO's protocol (``eval_knn.py``): L2-normalised CLS features, cosine similarity, the k nearest
training images vote with weight exp(s / T); chunked, so memory does not grow with the data.
"""

from __future__ import annotations

import argparse

from headless.cli._types import check_out_file, positive_int


def add_feature_args(p: argparse.ArgumentParser) -> None:
    """Options shared by eval-knn, eval-linear, label-sweep and embed."""
    p.add_argument("data", nargs="?", default=None, help="folder with train/ and val/")
    p.add_argument("--train", default=None, help="train ImageFolder (instead of DATA/train)")
    p.add_argument("--val", default=None, help="val ImageFolder (instead of DATA/val)")
    p.add_argument("--backbone", default="auto",
                   help="a backbone name (dinov2_vits14, dino_vits16, resnet50, ...); 'auto' "
                        "with a dino run folder as --weights")
    p.add_argument("--weights", default="official",
                   help="'official', 'random', a weights file or a dino run folder")
    p.add_argument("--size", type=positive_int, default=224,
                   help="centre-crop size fed to the model")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-cache", action="store_true", help="do not read / write the feature cache")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--quiet", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-knn", help="weighted k-NN accuracy of frozen features (DINO)")
    add_feature_args(p)
    p.add_argument("--k", type=positive_int, nargs="+", default=[10, 20, 100, 200])
    p.add_argument("--temperature", type=float, default=0.07)
    p.set_defaults(func=run)


def write_result(result: dict, out: str | None) -> None:
    import json

    text = json.dumps(result, indent=2)
    if out:
        from headless.store import atomic_write_text

        atomic_write_text(out, text + "\n")
    print(text)


def run(args: argparse.Namespace) -> int:
    from headless.progress import run_with_tqdm
    from headless.train.ssl.evaluation import eval_knn, labelled_features

    check_out_file(args.out)
    feats = run_with_tqdm(labelled_features(
        args.backbone, args.weights, args.data, args.train, args.val, args.size,
        args.batch_size, args.device, cache=not args.no_cache), desc="features",
        disable=args.quiet)
    write_result(eval_knn(feats, tuple(args.k), args.temperature), args.out)
    return 0
