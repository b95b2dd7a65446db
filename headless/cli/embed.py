"""``dinoseg embed``: a 2-D map (UMAP, else PCA) of a folder's features with outlier and
likely-mislabel scores, as CSV (most unusual first) and PNG (the CLI twin of the embedding
explorer)."""

from __future__ import annotations

import argparse

from headless.cli._types import check_out_file, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embedding map, outlier and mislabel scores of a folder")
    p.add_argument("folder", help="an ImageFolder (one sub-folder per class) or loose images")
    p.add_argument("--backbone", default="auto")
    p.add_argument("--weights", default="official")
    p.add_argument("--size", type=positive_int, default=224)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--k", type=positive_int, default=10)
    p.add_argument("--projection", choices=["auto", "umap", "pca"], default="auto")
    p.add_argument("--csv", default="embedding.csv")
    p.add_argument("--png", default="embedding.png")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from headless.progress import run_with_tqdm
    from headless.train.ssl.data import list_pretext
    from headless.train.ssl.explore import explore, write_csv
    from headless.train.ssl.extract import extract_features, open_model
    from headless.train.ssl.plot import scatter_plot

    check_out_file(args.csv, "--csv")
    check_out_file(args.png, "--png")
    folder = Path(args.folder)
    paths = list_pretext(folder, "image folder")
    classes = sorted({p.relative_to(folder).parts[0] for p in paths if
                      len(p.relative_to(folder).parts) > 1})
    labels = None
    if classes and all(len(p.relative_to(folder).parts) > 1 for p in paths):
        labels = np.array([classes.index(p.relative_to(folder).parts[0]) for p in paths])
    fm = open_model(args.backbone, args.weights, args.device)
    x = run_with_tqdm(extract_features(fm, paths, args.size, args.batch_size,
                                       cache=not args.no_cache), desc="features",
                      disable=args.quiet)
    emb = explore(x, labels, args.k, args.projection)
    write_csv(args.csv, paths, emb, labels, classes if labels is not None else None)
    groups = labels if labels is not None else np.zeros(len(paths), int)
    scatter_plot(args.png, emb.xy, groups, classes if labels is not None else ["images"],
                 f"{emb.projection} of {fm.label}")
    print(f"{len(paths)} images, {emb.projection} map; most unusual:")
    for i in emb.ranking("knn_distance")[:5]:
        print(f"  {paths[i]}  knn_distance {emb.knn_distance[i]:.3f}  lof {emb.lof[i]:.2f}")
    print(f"wrote {args.csv} and {args.png}")
    return 0
