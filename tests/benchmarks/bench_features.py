"""Feature-extraction throughput of the engine vs a plain timm ``forward_features``.

Both run the same model on the same batch, interleaved round by round so machine load hits both
alike; the ratio engine / timm (images per second) must be >= 0.95: getting q/k/v and the CLS
attention must cost almost nothing.

    python tests/benchmarks/bench_features.py [--backbone dinov2_vits14] [--size 224] [--batch 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from headless.features.backbones import load_backbone
from headless.features.forward import extract


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="dinov2_vits14")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    bb = load_backbone(args.backbone, "random", device=args.device)
    x = torch.randn(args.batch, 3, args.size, args.size)
    xd = x.to(bb.device)
    use_amp = bb.device.startswith("cuda")

    def plain() -> None:
        with torch.inference_mode(), torch.autocast(bb.device.split(":")[0], torch.bfloat16,
                                                    enabled=use_amp):
            out = bb.model.forward_features(xd)
        out.float().cpu()

    def engine() -> None:
        extract(bb, x)

    def sync() -> None:
        if use_amp:
            torch.cuda.synchronize()

    for f in (plain, engine):  # warm-up
        f()
    times = {"timm forward_features": [], "engine extract": []}
    for _ in range(args.rounds):
        for name, f in (("timm forward_features", plain), ("engine extract", engine)):
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[name].append(time.perf_counter() - t0)
    print(f"{args.backbone} (random weights), {args.batch} x {args.size}px, device {bb.device}, "
          f"torch threads {torch.get_num_threads()}, {args.rounds} interleaved rounds")
    med = {}
    for name, ts in times.items():
        ts = sorted(ts)
        med[name] = ts[len(ts) // 2]
        print(f"  {name:24s} median {med[name] * 1000:8.1f} ms/batch "
              f"({args.batch / med[name]:6.1f} img/s)")
    ratio = med["timm forward_features"] / med["engine extract"]
    print(f"throughput ratio engine / timm = {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
