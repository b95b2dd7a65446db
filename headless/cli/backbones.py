"""``dinoseg backbones``: the known backbones, their patch size, and whether weights are cached."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backbones",
        help="list backbone names, patch sizes and whether official weights are in the cache",
        description="Lists every name --backbone accepts. 'cached' means the official weights "
        "are on this machine (the cache folder or the Hugging Face cache), so no download is "
        "needed; test architectures have none.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def backbone_rows() -> list[dict[str, object]]:
    """One row per backbone: name, family, patch, embedding size, registers, cached file."""
    from headless.features.backbones import (
        REGISTRY,
        WeightsError,
        list_backbones,
        official_weights_path,
    )

    rows = []
    for name in list_backbones():
        spec = REGISTRY[name]
        cached = None
        if spec.url:
            try:
                cached = str(official_weights_path(spec, download=False))
            except WeightsError:
                cached = None
        rows.append({"name": name, "family": spec.family, "patch": spec.patch_size,
                     "dim": spec.embed_dim, "registers": spec.num_registers,
                     "official": bool(spec.url), "cached": cached})
    return rows


def run(args: argparse.Namespace) -> int:
    from headless.features.backbones import cache_dir

    rows = backbone_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<24} {'patch':>5} {'dim':>5} {'reg':>3}  weights")
    for r in rows:
        state = ("cached: " + str(r["cached"]) if r["cached"]
                 else "not cached" if r["official"] else "none (random or a file)")
        print(f"{r['name']:<24} {r['patch']:>5} {r['dim']:>5} {r['registers']:>3}  {state}")
    print(f"cache folder: {cache_dir()} (DINOSEG_CACHE moves it)")
    return 0
