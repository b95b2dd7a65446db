"""``dinoseg attention-maps``: compute and cache a dataset's DINO attention maps once.

The CLI twin of the attention step of a training job with ``crop.type: attention`` (the Train
panel runs the same :func:`headless.train.attention_maps.compute_attention_maps`): afterwards data
loaders only read the cached maps. ``--runner local|torchrun|slurm`` computes the same cache
as a sharded, resumable batch job (:class:`headless.batch.tasks.attention_maps.AttentionMapsTask`,
on the same per-image functions).
"""

from __future__ import annotations

import argparse
import sys

from headless.cli._batch import add_batch_arguments, launch_batch, wants_batch
from headless.cli._types import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention-maps",
        help="compute and cache mean-over-heads CLS attention maps of many images, in batches",
        conflict_handler="resolve",  # its own --batch-size replaces the batch group's
    )
    p.add_argument("images", nargs="+", help="image files or folders (ImageFolders: recursive)")
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--weights", default="official", help="'official', 'random' or a file")
    p.add_argument("--size", type=positive_int, default=224, help="longer side fed to the ViT")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=None,
                   help="cache folder (default: the images' project, <folder>/.dinoseg/cache)")
    p.add_argument("--overwrite", action="store_true", help="recompute maps already cached")
    p.add_argument("--quiet", action="store_true")
    add_batch_arguments(p)
    # after the batch options: this --batch-size (default 16) is also a batch job's
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="images per forward pass (also in a batch job), default 16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from headless.features.backbones import resolve_device
    from headless.images import IMAGE_SUFFIXES
    from headless.progress import run_with_tqdm
    from headless.train.attention_maps.compute import compute_attention_maps

    paths: list[Path] = []
    for item in args.images:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                            and ".dinoseg" not in f.parts)
        elif p.is_file():
            paths.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder")
    if not paths:
        raise ValueError("no images found")
    if wants_batch(args):
        from headless.train.attention_maps.store import default_cache_dir

        cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir(paths)
        weights = Path(str(args.weights)).expanduser()
        weights = (str(weights.resolve()) if str(args.weights) not in ("official", "random")
                   and weights.exists() else args.weights)
        options = {"backbone": args.backbone, "weights": weights, "size": args.size,
                   "cache_dir": str(cache.resolve()), "overwrite": bool(args.overwrite)}
        args.job_batch_size = args.batch_size
        return launch_batch(args, "attention-maps", paths, cache.resolve(), options,
                            device=args.device)
    store = run_with_tqdm(
        compute_attention_maps(args.backbone, paths, size=args.size, batch_size=args.batch_size,
                               device=resolve_device(args.device), cache_dir=args.cache_dir,
                               overwrite=args.overwrite, weights=args.weights),
        desc="attention maps", disable=args.quiet,
    )
    missing = store.missing(paths)
    for m in missing:
        why = store.failures.get(str(m))
        print(f"no map: {m}" + (f" ({why})" if why else ""), file=sys.stderr)
    print(f"{len(paths) - len(missing)} of {len(paths)} maps cached in {store.cache_dir}")
    return 1 if missing else 0
