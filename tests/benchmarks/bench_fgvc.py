"""Benchmark of the fgvc model (not collected by pytest): run as a script.

1. Training step time of IELT divided by the same backbone with a plain linear head, same
   batch and input size, measured side by side (alternating steps, median of each).
2. Peak memory of a batch with sub-batch accumulation versus without: on a GPU
   ``torch.cuda.max_memory_allocated``; on the CPU the resident set sampled during the step;
   both above what the model and optimiser hold. Each configuration runs in its own process.

    python tests/benchmarks/bench_fgvc.py --backbone dinov2_vits14 --size 224 --batch 4
    python tests/benchmarks/bench_fgvc.py --device cuda --backbone dinov2_vitb14 --size 448 \
        --batch 32 --sub-batch 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _spec(args: argparse.Namespace, head: str, sub: int | None):
    from headless.train.fgvc.spec import FgvcSpec

    return FgvcSpec(device=args.device, model={"backbone": args.backbone, "weights": "random",
                                               "head": head},
                    data={"image_size": args.size, "batch_size": args.batch, "sub_batch": sub,
                          "triplets": False},  # random tensors: no sampler, any batch size
                    loss={"triplet_weight": 1.0 if (sub is None or sub % 3 == 0) else 0.0})


def _setup(args: argparse.Namespace, head: str, sub: int | None):
    import torch

    from headless.train.classifier.optim import build_optimizer
    from headless.train.fgvc.build import build_fgvc
    from headless.train.fgvc.spec import resolved_opt

    spec = _spec(args, head, sub)
    model = build_fgvc(spec, 200).model.to(args.device).train()
    opt = build_optimizer(model, resolved_opt(spec))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(args.device)
    y = (torch.arange(args.batch) % max(1, args.batch // 2)).to(args.device)
    return spec, model, opt, x, y


def _step(spec, model, opt, x, y, dtype) -> None:
    import torch

    from headless.train.fgvc.job import train_step

    opt.zero_grad(set_to_none=True)
    train_step(model, model, x, y, spec, dtype, False)
    opt.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def time_ratio(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else None
    runs = {h: _setup(args, h, None) for h in ("ielt", "linear")}
    for h in runs:
        _step(*runs[h], dtype)  # warm-up
    times: dict[str, list[float]] = {h: [] for h in runs}
    for _ in range(args.steps):
        for h in runs:
            t = time.perf_counter()
            _step(*runs[h], dtype)
            times[h].append(time.perf_counter() - t)
    med = {h: statistics.median(v) for h, v in times.items()}
    print(f"step time ({args.backbone}, {args.size}px, batch {args.batch}, {args.device}): "
          f"IELT {med['ielt']:.3f} s, linear {med['linear']:.3f} s, "
          f"ratio {med['ielt'] / med['linear']:.3f} (target <= 1.3)")


def _rss_mib() -> float:
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory_child(args: argparse.Namespace) -> None:
    """Peak memory of one training step above what the model and optimiser already hold: on a
    GPU the allocator's peak, on the CPU the resident set sampled every 2 ms during the step
    (large tensors are mmap'ed, so freed activations leave the resident set)."""
    import gc
    import threading

    import torch

    sub = args.child_sub if args.child_sub > 0 else None
    spec, model, opt, x, y = _setup(args, "ielt", sub)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else None
    _step(spec, model, opt, x, y, dtype)  # optimiser state exists from here on
    gc.collect()
    if args.device.startswith("cuda"):
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        _step(spec, model, opt, x, y, dtype)
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        base, high, done = _rss_mib(), [0.0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                high[0] = max(high[0], _rss_mib())
                done.wait(0.002)

        t = threading.Thread(target=sample)
        t.start()
        _step(spec, model, opt, x, y, dtype)
        done.set()
        t.join()
        peak = max(high[0], _rss_mib()) - base
    print(json.dumps({"sub_batch": sub, "peak_mib": peak}))


def memory(args: argparse.Namespace) -> None:
    out = {}
    for sub in (0, args.sub_batch):
        cmd = [sys.executable, __file__, "--child-sub", str(sub), "--backbone", args.backbone,
               "--size", str(args.size), "--batch", str(args.batch), "--device", args.device]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[sub] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
    kind = "GPU allocated" if args.device.startswith("cuda") else "resident set"
    print(f"peak step memory above the model ({kind}, batch {args.batch}, {args.size}px): "
          f"whole batch {out[0]:.0f} MiB, sub-batch {args.sub_batch} "
          f"{out[args.sub_batch]:.0f} MiB, "
          f"ratio {out[args.sub_batch] / out[0]:.3f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--sub-batch", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--child-sub", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--skip-time", action="store_true")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child_sub >= 0:
        _memory_child(args)
        return
    if not args.skip_time:
        time_ratio(args)
    memory(args)


if __name__ == "__main__":
    main()
