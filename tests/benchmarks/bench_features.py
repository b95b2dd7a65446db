"""Feature-extraction throughput of the engine vs a plain timm ``forward_features``.

Both run the same model on the same batch, interleaved round by round so machine load hits both
alike; the ratio engine / timm (images per second) must be >= 0.95: getting q/k/v and the CLS
attention must cost almost nothing.

    python tests/benchmarks/bench_features.py [--backbone dinov2_vits14] [--size 224] [--batch 8]
        [--weights FILE|random|official] [--pos-resize official|timm]

Weights default to the real DINOv2 ViT-S/14 in ../shared/weights when it is there (loaded through
the user's ``--weights FILE`` path), else random: cost does not depend on them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
    ap.add_argument("--weights", default=None)
    ap.add_argument("--pos-resize", default=None, choices=("official", "timm"))
    args = ap.parse_args()

    shared = (Path(__file__).resolve().parents[3] / "shared" / "weights"
              / "dinov2_vits14_imgfocus.safetensors")
    weights = args.weights or (str(shared) if shared.is_file() and args.backbone ==
                               "dinov2_vits14" else "random")
    bb = load_backbone(args.backbone, weights, device=args.device, pos_resize=args.pos_resize)
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
    print(f"{args.backbone} ({bb.weights_label}, {bb.pos_resize} position resizing), "
          f"{args.batch} x {args.size}px, device {bb.device}, "
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
