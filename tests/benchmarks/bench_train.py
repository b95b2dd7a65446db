"""Training throughput and data-loading cost, measured side by side in one run.

    python tests/benchmarks/bench_train.py [--images 96] [--size 224] [--steps 4] [--threads N]

1. Data loading: one epoch of the classifier job's real loader (ImageFolder dataset, keyed
   per-sample seeds, crop, flip, ToDtype, Normalize, collate) with RandomResizedCrop and with
   AttentionDensityCrop reading cached maps, alternated over several repeats; the ratio of
   median epoch times is the issue's target (<= 1.1; seed 000 measured ~12x when maps were
   computed per item). The one-off map computation is reported separately.
2. Model steps per second (forward + backward + SGD step on a fixed batch): ResNet-50, a
   DINOv2 ViT-S/14 with a frozen backbone (random weights: speed does not depend on them),
   and the tiny test ResNet; on CUDA too when a GPU is present (bf16 autocast, channels-last).
3. The whole job (``headless.train.classifier.run``: loader + steps + logging) in images/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, n: int, size: int) -> None:
    from headless.train.synthetic import make_shapes_dataset

    make_shapes_dataset(folder, n_per_class=max(2, n // 3), size=size, seed=0)


def loader_epoch(spec, attention, threads: int) -> float:
    import torch
    from torch.utils.data import DataLoader

    from headless.train.data import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        ClassifierDataset,
        EpochBatches,
        plan_data,
        train_transform,
    )

    torch.set_num_threads(threads)
    plan = plan_data(spec)
    ds = ClassifierDataset(plan.split.train, train_transform(spec, IMAGENET_MEAN, IMAGENET_STD),
                           plan.boxes, seed=0, attention=attention)
    sampler = EpochBatches(len(ds), spec.data.batch_size, seed=0, epoch=0)
    t = time.perf_counter()
    n = 0
    for x, _ in DataLoader(ds, batch_sampler=sampler, num_workers=spec.data.num_workers):
        n += x.shape[0]
    return time.perf_counter() - t


def bench_loading(root: Path, size: int, workers: int, repeats: int, threads: int) -> None:
    from headless.jobs.spec import build_spec
    from headless.progress import run
    from headless.train.attention_maps.compute import compute_attention_maps
    from headless.train.classifier.attention_lookup import AttentionLookup
    from headless.train.data import plan_data

    base = {"data": {"root": str(root), "image_size": size, "batch_size": 16,
                     "num_workers": workers, "val_fraction": 0.0},
            "augment": {"enabled": False}, "model": {"type": "test_resnet_tiny"}}
    rrc = build_spec(base)
    att = build_spec({**base, "crop": {"type": "attention", "temperature": 0.5}})
    paths = [p for p, _ in plan_data(att).split.train]
    t = time.perf_counter()
    store = run(compute_attention_maps("test_dinov2_tiny14_reg", paths, size=size,
                                       weights="random", device="cpu"))
    t_maps = time.perf_counter() - t
    t = time.perf_counter()
    run(compute_attention_maps("test_dinov2_tiny14_reg", paths, size=size, weights="random",
                               device="cpu"))
    t_cached = time.perf_counter() - t
    lookup = AttentionLookup(store, paths)
    loader_epoch(rrc, None, threads)  # warm-up: file cache, imports
    loader_epoch(att, lookup, threads)
    times = {"random_resized": [], "attention": []}
    for _ in range(repeats):  # alternate so load on the machine hits both alike
        times["random_resized"].append(loader_epoch(rrc, None, threads))
        times["attention"].append(loader_epoch(att, lookup, threads))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n== data loading: {len(paths)} images, {size} px, batch 16, {workers} workers, "
          f"{repeats} alternated epochs ==")
    print(f"attention maps, one-off (tiny ViT, random weights): {t_maps:.2f} s; "
          f"second call, all cached: {t_cached:.2f} s")
    for k, v in times.items():
        print(f"{k:>15}: median epoch {med[k]:.3f} s  ({', '.join(f'{x:.3f}' for x in v)})")
    print(f"RATIO AttentionDensityCrop / RandomResizedCrop epoch time: "
          f"{med['attention'] / med['random_resized']:.3f}  (target <= 1.1)")


def model_steps(name: str, weights: str | None, size: int, batch: int, steps: int,
                device: str, freeze: bool = False) -> float:
    import torch

    from headless.jobs.spec import build_spec
    from headless.train.classifier import build_model

    cfg = build_spec({"model": {"type": name, "weights": weights,
                                "freeze_backbone": freeze}}).model
    model = build_model(cfg, 10).model.to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                          momentum=0.9)
    amp = device == "cuda" and torch.cuda.is_bf16_supported()

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def bench_models(size: int, steps: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    configs = [("resnet50", None, size, False), ("dinov2_vits14", "random", size, True),
               ("test_resnet_tiny", None, 32, False)]
    print(f"\n== model steps (forward + backward + SGD), torch threads {threads} ==")
    for device in devices:
        for name, weights, sz, freeze in configs:
            batch = 8 if device == "cpu" else 64
            n = steps if device == "cpu" else 20
            if device == "cpu" and name == "test_resnet_tiny":
                batch, n = 32, 20
            sps = model_steps(name, weights, sz, batch, n, device, freeze)
            tag = " (frozen backbone)" if freeze else ""
            print(f"{device:>4} {name + tag:<36} {sz:>4} px batch {batch:>3}: {sps:7.3f} steps/s "
                  f"= {sps * batch:8.1f} images/s")


def bench_job(root: Path, threads: int) -> None:
    from headless.jobs.runs import new_run_dir
    from headless.jobs.spec import build_spec
    from headless.train import classifier

    spec = build_spec({"data": {"root": str(root), "image_size": 32, "batch_size": 16,
                                "num_workers": 0}, "model": {"type": "test_resnet_tiny"},
                       "max_steps": 30, "cpu_threads": threads, "log": {"interval": 10},
                       "device": "cpu"})
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = new_run_dir(spec, tmp)
        t = time.perf_counter()
        classifier.run(spec, run_dir)
        dt = time.perf_counter() - t
    print(f"\n== whole classifier job (test_resnet_tiny, 32 px, batch 16, 30 steps, evals, "
          f"checkpoints) ==\n{30 / dt:.2f} steps/s = {30 * 16 / dt:.1f} images/s "
          f"(wall {dt:.2f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import os

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, CUDA: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shapes"
        make_images(root, args.images, args.size)
        bench_loading(root, args.size, args.workers, args.repeats, args.threads)
        small = Path(tmp) / "small"
        make_images(small, 96, 32)
        bench_job(small, args.threads)
    bench_models(args.size, args.steps, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
