"""Data-loading cost of the seed-000 crops, measured side by side with RandomResizedCrop.

Target (issue 7): a data-loading epoch with AttentionDensityCrop takes at most 1.1x as long as
with RandomResizedCrop on the same images. The seed measured 2x for a loader pass (8 min 36 s vs
4 min 7 s) and 12x for a training epoch (6 min vs 30 s) because it ran the ViT inside
``__getitem__``;
here the maps are computed once (``compute_attention_maps``) and the loader reads a small
float16 array per image.

Images: ``--n`` JPEGs of 500 x 375 generated in a temporary folder (smooth random blobs, JPEG
quality 90), or a real folder with ``--images`` (e.g. ../shared/data/raccoon_voc/images).
Maps: computed through the real path, ``compute_attention_maps`` with the tiny random-initialised
ViT ``test_dino_tiny16`` (the map's cost in the loader does not depend on the weights, only on
its grid size: 224 px / 16 = 14 cells on the long side, as ViT-S/16 at 224).

Columns, each the same DataLoader (batch 32, PIL decode, crop to 224, ToImage, ToDtype,
Normalize), epochs interleaved round-robin so that load on a shared machine hits all alike:
  rrc        v2.RandomResizedCrop
  density    AttentionDensityCrop, the recommended path: maps packed and cleaned once
             (store.pack(paths).densities(*crop.clean_params)), looked up by dataset index
  density-file  AttentionDensityCrop reading each item's cache file in __getitem__ and
             cleaning the map per item
  localized  LocalizedRandomResizedCrop with one box per image
  seed-way   (optional, --seed-way) the seed's approach: a ViT-S/16 forward pass per item
             (random weights, same compute as the real model), on --seed-way-n items, per item

Run: python tests/benchmarks/bench_crops.py [--n 200] [--repeats 5] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from headless import progress
from headless.train.attention_maps import clean_attention_density, compute_attention_maps
from headless.train.crops import (
    AttentionDensityCrop,
    AttentionMap,
    LocalizedRandomResizedCrop,
    to_bounding_boxes,
)

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n JPEGs of 500 x 375: a few smooth blobs on a gradient (compressible like photos)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    paths = []
    for i in range(n):
        img = np.zeros((375, 500, 3), np.float32) + rng.uniform(0, 80, 3)
        img += (xx / 500.0)[..., None] * rng.uniform(0, 60, 3)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, 500), rng.uniform(0, 375), rng.uniform(20, 120)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            img += blob[..., None] * rng.uniform(40, 175, 3)
        img += rng.normal(0, 6, img.shape)
        p = folder / f"img_{i:04d}.jpg"
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


class LoaderDataset(torch.utils.data.Dataset):
    """What a training Dataset does per item: decode, look up box / map, transform."""

    def __init__(self, paths, mode, crop, store=None, boxes=None, vit=None):
        self.paths, self.mode, self.store, self.boxes, self.vit = paths, mode, store, boxes, vit
        self.packed = None
        if store is not None and isinstance(crop, AttentionDensityCrop):
            self.packed = store.pack(paths).densities(*crop.clean_params)
        self.tail = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                                v2.Normalize(MEAN, STD)])
        self.crop = crop

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        """(tensor, CPU seconds this item took in its worker thread)."""
        t0 = time.thread_time()
        out = self._item(i)
        return out, time.thread_time() - t0

    def _item(self, i):
        p = self.paths[i]
        img = Image.open(p).convert("RGB")
        if self.mode == "rrc":
            out = self.crop(img)
        elif self.mode == "density":  # the recommended path: maps packed, looked up by index
            out = self.crop(img, self.packed[i])[0]
        elif self.mode == "density-file":  # one cache-file read per item
            out = self.crop(img, self.store.attention_map(p))[0]
        elif self.mode == "localized":
            out = self.crop(img, to_bounding_boxes([self.boxes[i]], (img.height, img.width)))[0]
        else:  # seed-way: the ViT runs on the item to get its attention, then the crop
            x = self.tail(v2.functional.resize(img, [224, 224]))
            with torch.inference_mode():
                from headless.features.forward import extract

                attn = extract(self.vit, x[None], autocast=False).attn[0].mean(0)
            out = self.crop(img, AttentionMap(attn))[0]
        return self.tail(out)


def time_epoch(loader) -> tuple[float, float]:
    """(wall seconds of the epoch, CPU seconds summed over items in whichever process)."""
    cpu = 0.0
    t0 = time.perf_counter()
    for _, item_cpu in loader:
        cpu += float(item_cpu.sum())
    return time.perf_counter() - t0, cpu


def micro(store, paths, crop) -> dict[str, float]:
    """Per-item costs in microseconds (main process)."""
    k = min(len(paths), 200)
    t0 = time.perf_counter()
    maps = [store.get(p) for p in paths[:k]]
    t_get = (time.perf_counter() - t0) / k * 1e6
    packed = store.pack(paths[:k]).densities(*crop.clean_params)
    t0 = time.perf_counter()
    for i in range(k):
        packed[i]
    t_packed = (time.perf_counter() - t0) / k * 1e6
    t0 = time.perf_counter()
    dens = [clean_attention_density(m, crop.temperature, sigma=crop.sigma) for m in maps]
    t_clean = (time.perf_counter() - t0) / k * 1e6
    t0 = time.perf_counter()
    for d in dens:
        crop.sample_window(375, 500, d)
    t_win = (time.perf_counter() - t0) / k * 1e6
    t0 = time.perf_counter()
    for p in paths[:k]:
        Image.open(p).convert("RGB")
    t_decode = (time.perf_counter() - t0) / k * 1e6
    return {"map file read": t_get, "packed density lookup": t_packed, "clean density": t_clean,
            "sample window": t_win, "JPEG decode": t_decode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--images", type=Path, default=None, help="real image folder instead")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--seed-way", action="store_true", help="also time a ViT-S/16 per item")
    ap.add_argument("--seed-way-n", type=int, default=64, help="items for the seed-way column")
    args = ap.parse_args()
    torch.manual_seed(0)
    # one thread, as in every DataLoader worker; two OpenMP threads in the main process on a
    # loaded machine made num_workers=0 epochs 5x slower and noisy (threads waiting on each other)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.images:
            paths = sorted(p for p in args.images.iterdir()
                           if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
            source = f"{len(paths)} real images from {args.images}"
        else:
            (tmp / "imgs").mkdir()
            paths = make_images(tmp / "imgs", args.n)
            source = f"{len(paths)} generated JPEGs 500x375"
        from headless.features.backbones import load_backbone

        bb = load_backbone("test_dino_tiny16", weights="random")
        t0 = time.perf_counter()
        store = progress.run(compute_attention_maps(bb, paths, size=args.size, batch_size=32,
                                                    cache_dir=tmp / "cache"))
        t_maps = time.perf_counter() - t0
        files = list(store.folder.glob("*.f16"))
        kb = sum(f.stat().st_size for f in files) / len(files) / 1024
        shape = store.get(paths[0]).shape

        rng = np.random.default_rng(1)
        boxes = []
        for p in paths:
            w, h = Image.open(p).size
            bw, bh = rng.uniform(0.2, 0.7) * w, rng.uniform(0.2, 0.7) * h
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            boxes.append((x0, y0, x0 + bw, y0 + bh))

        s = args.size
        density = AttentionDensityCrop(s, args.temperature)
        crops = {
            "rrc": v2.RandomResizedCrop(s, antialias=True),
            "density": density,
            "density-file": density,
            "localized": LocalizedRandomResizedCrop(s, 0.5),
        }
        print(f"images: {source}; maps: test_dino_tiny16 (random weights) via "
              f"compute_attention_maps at size {args.size}: {len(files)} maps {shape} float16, "
              f"{kb:.2f} KB each, computed once in {t_maps:.1f} s")
        print(f"torch threads {torch.get_num_threads()}, batch {args.batch}, "
              f"{args.repeats} timed epochs per column after one warm-up, interleaved")
        print("per item (us):", ", ".join(f"{k} {v:.0f}" for k, v in
                                          micro(store, paths, density).items()))

        for nw in args.workers:
            loaders = {}
            for mode, crop in crops.items():
                ds = LoaderDataset(paths, mode, crop, store=store, boxes=boxes)
                loaders[mode] = torch.utils.data.DataLoader(
                    ds, batch_size=args.batch, num_workers=nw, persistent_workers=nw > 0)
            times: dict[str, list[float]] = {m: [] for m in loaders}
            cpus: dict[str, list[float]] = {m: [] for m in loaders}
            for m in loaders:  # warm-up (worker start, page cache)
                time_epoch(loaders[m])
            for _ in range(args.repeats):
                for m in loaders:
                    wall, cpu = time_epoch(loaders[m])
                    times[m].append(wall)
                    cpus[m].append(cpu)
            print(f"\nnum_workers={nw}: epoch wall seconds, median of {args.repeats} [all runs]; "
                  "CPU seconds in __getitem__ summed over the epoch, median")
            for m, t in times.items():
                runs = ", ".join(f"{x:.2f}" for x in t)
                print(f"  {m:10s} {statistics.median(t):6.3f} s [{runs}]"
                      f"   CPU {statistics.median(cpus[m]):6.3f} s")
            for key in ("density", "density-file", "localized"):
                wall_pairs = [a / b for a, b in zip(times[key], times["rrc"])]
                cpu_pairs = [a / b for a, b in zip(cpus[key], cpus["rrc"])]
                print(f"  ratio {key:12s} / rrc: wall {statistics.median(wall_pairs):.3f} "
                      f"(median of paired epochs; ratio of medians "
                      f"{statistics.median(times[key]) / statistics.median(times['rrc']):.3f}), "
                      f"CPU {statistics.median(cpu_pairs):.3f}"
                      + ("   target <= 1.1" if key == "density" else ""))
            med = {m: statistics.median(t) for m, t in times.items()}
            if args.seed_way:
                vit = load_backbone("dino_vits16", weights="random")
                sub = paths[: args.seed_way_n]
                ds = LoaderDataset(sub, "seed", density, vit=vit)
                loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, num_workers=nw)
                t, _ = time_epoch(loader)
                per_rrc = med["rrc"] / len(paths)
                print(f"  seed-way   {t / len(sub) * 1e3:6.1f} ms per item (ViT-S/16 in "
                      f"__getitem__, {len(sub)} items) vs rrc {per_rrc * 1e3:.1f} ms: "
                      f"ratio {t / len(sub) / per_rrc:.1f}")


if __name__ == "__main__":
    main()
