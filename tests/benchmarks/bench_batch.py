"""Batch path vs the interactive per-image path: images/s on the same images, and memory.

The interactive path is ``dinoseg boxes`` in-process (:func:`headless.boxes.compute.compute_boxes`:
decode, resize, one forward per image, LOST); the batch path is the ``batch`` job
(:func:`headless.batch.job.run`: DataLoader workers decoding ahead, forwards batched by padded
input shape, LOST, plus the QC signals). They run chunk by chunk, alternating, so machine load
hits both alike; both load the model per chunk. Printed: images/s of each, the ratio (target
>= 1.5 on CPU), that both give the same boxes, and the batch worker's resident memory sampled
through the run (it must stay flat: nothing grows with the number of images but the outputs).

    python tests/benchmarks/bench_batch.py [--n 200] [--chunk 50] [--size 448] [--batch 8]
        [--workers 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def rss_sampler(samples: list[tuple[float, int]], stop: threading.Event) -> None:
    import psutil

    proc = psutil.Process()
    while not stop.is_set():
        samples.append((time.monotonic(), proc.memory_info().rss))
        stop.wait(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--method", default="lost")
    args = ap.parse_args()

    import torch

    from headless.batch import job as batch_job
    from headless.boxes.compute import compute_boxes
    from headless.jobs.runs import new_run_dir
    from headless.jobs.spec import build_spec
    from headless.progress import run as drive

    weights = SHARED / "weights" / "dinov2_vits14_imgfocus.safetensors"
    images = sorted((SHARED / "data" / "raccoon_voc" / "images").glob("*.jpg"))[: args.n]
    if not weights.is_file() or not images:
        raise SystemExit("needs ../shared (weights and raccoon_voc)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    t_inter = t_batch = 0.0
    same, total = 0, 0
    samples: list[tuple[float, int]] = []
    for start in range(0, len(images), args.chunk):
        chunk = images[start:start + args.chunk]
        t0 = time.perf_counter()
        run = drive(compute_boxes(chunk, args.method, backbone="dinov2_vits14",
                                  weights=str(weights), device=args.device, size=args.size))
        t_inter += time.perf_counter() - t0

        out = tmp / f"batch_{start}.json"
        spec = build_spec({
            "job": "batch", "task": "boxes", "images": [str(p) for p in chunk], "out": str(out),
            "shards": 1, "device": args.device, "batch_size": args.batch,
            "num_workers": args.workers,
            "options": {"method": args.method, "backbone": "dinov2_vits14",
                        "weights": str(weights), "size": args.size}})
        stop = threading.Event()
        sampler = threading.Thread(target=rss_sampler, args=(samples, stop), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        batch_job.run(spec, new_run_dir(spec, tmp / "runs"))
        t_batch += time.perf_counter() - t0
        stop.set()
        sampler.join()

        merged = json.loads(out.read_text())
        by_name = {im["file_name"]: im["id"] for im in merged["images"]}
        got: dict[str, list] = {}
        for a in merged["annotations"]:
            got.setdefault(a["image_id"], []).append([round(v, 3) for v in a["bbox"]])
        for name, boxes in run.boxset.boxes.items():
            total += 1
            want = [[round(v, 3) for v in (b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0)]
                    for b in boxes]
            same += got.get(by_name.get(name), []) == want
        print(f"  images {start}-{start + len(chunk)}: interactive {t_inter:.1f} s, "
              f"batch {t_batch:.1f} s so far", flush=True)
    n = len(images)
    r_i, r_b = n / t_inter, n / t_batch
    mb = [rss / 2**20 for _, rss in samples]
    third = max(1, len(mb) // 3)
    print(f"\n## Batch vs interactive boxes ({n} raccoon_voc photos, {args.size} px, "
          f"{args.method}, DINOv2-S, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)\n")
    print("| path | images/s | ratio |")
    print("|---|---|---|")
    print(f"| interactive (one forward per image) | {r_i:.2f} | 1.00 |")
    print(f"| batch job (batch {args.batch}, {args.workers} loader workers, + QC) | {r_b:.2f} "
          f"| {r_b / r_i:.2f} |")
    print(f"\nsame boxes: {same}/{total} images")
    print(f"batch worker RSS: first third {max(mb[:third]):.0f} MiB, last third "
          f"{max(mb[-third:]):.0f} MiB, peak {max(mb):.0f} MiB ({len(mb)} samples)")


if __name__ == "__main__":
    main()
