"""Batch path vs the interactive per-image path: images/s on the same images, and memory.

The interactive path is ``dinoseg boxes`` in-process (:func:`headless.boxes.compute.compute_boxes`:
decode, resize, one forward per image, LOST); the batch path is the ``batch`` job
(:func:`headless.batch.job.run`: DataLoader workers decoding ahead, forwards batched by padded
input shape, LOST, plus the QC signals). They run chunk by chunk, alternating, so machine load
hits both alike; both load the model per chunk. Printed: images/s of each, the ratio (target
>= 1.5 on CPU), how many images get the same boxes, CorLoc against the VOC truth, and the batch
worker's resident memory sampled through the run (flat: nothing grows with the number of
images but the outputs). The batch job runs twice: float32 (boxes equal to the interactive
path) and ``--precision bf16`` (bf16 autocast: AMX on recent Xeons, tensor cores on GPUs).

    python tests/benchmarks/bench_batch.py [--n 200] [--chunk 50] [--size 448] [--batch 8]
        [--workers 2] [--device cpu|cuda]
    python tests/benchmarks/bench_batch.py --flat 5000

``--flat N`` instead runs one batch job over N generated 48x64 images with a tiny ViT and prints
the worker's resident memory at each tenth of the run: flat means the images are streamed, not
held.
"""

from __future__ import annotations

import argparse
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


def flat_memory(n: int, workers: int) -> None:
    """RSS of a batch worker over a long run of small images (tiny ViT, random weights)."""
    import numpy as np
    import psutil
    import torch
    from PIL import Image

    from headless.batch import job as batch_job
    from headless.features.backbones import load_backbone
    from headless.jobs.runs import new_run_dir
    from headless.jobs.spec import build_spec

    tmp = Path(tempfile.mkdtemp(prefix="bench_flat_"))
    rng = np.random.default_rng(0)
    folder = tmp / "imgs"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"{i:06d}.png")
    torch.manual_seed(0)
    weights = tmp / "tiny.pth"
    torch.save(load_backbone("test_dino_tiny16", "random").model.state_dict(), weights)
    spec = build_spec({
        "job": "batch", "task": "boxes", "images": [str(p) for p in sorted(folder.iterdir())],
        "out": str(tmp / "boxes.csv"), "shards": 1, "device": "cpu", "batch_size": 16,
        "num_workers": workers,
        "options": {"method": "lost", "backbone": "test_dino_tiny16", "weights": str(weights)}})
    run_dir = new_run_dir(spec, tmp / "runs")
    proc = psutil.Process()
    marks: list[tuple[int, float]] = []
    stop = threading.Event()

    def watch() -> None:
        from headless.batch.records import RECORDS_NAME, shard_dir

        path = shard_dir(run_dir, 0) / RECORDS_NAME
        while not stop.is_set():
            done = path.read_bytes().count(b"\n") if path.exists() else 0
            if not marks or done >= marks[-1][0] + n // 10:
                marks.append((done, proc.memory_info().rss / 2**20))
            stop.wait(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.perf_counter()
    batch_job.run(spec, run_dir)
    elapsed = time.perf_counter() - t0
    stop.set()
    t.join()
    marks.append((n, proc.memory_info().rss / 2**20))
    print(f"\n## Batch worker memory over {n} images (48x64, tiny ViT, {workers} loader "
          f"workers): {n / elapsed:.0f} images/s\n")
    print("| images done | RSS MiB |")
    print("|---|---|")
    for done, mib in marks:
        print(f"| {done} | {mib:.0f} |")
    body = [m for d, m in marks if d >= n // 10]
    print(f"\ngrowth from 10% to the end: {body[-1] - body[0]:+.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flat", type=int, default=0, help="memory run over N generated images")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--method", default="lost")
    args = ap.parse_args()
    if args.flat:
        flat_memory(args.flat, args.workers)
        return

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
    from headless.boxes import read_boxes
    from headless.boxes.metrics import corloc, iou

    truth = read_boxes(SHARED / "data" / "raccoon_voc" / "annotations")
    times = {"interactive": 0.0, "batch": 0.0, "batch_bf16": 0.0}
    preds: dict[str, dict[str, list]] = {k: {} for k in times}
    samples: list[tuple[float, int]] = []

    def batch(chunk: list[Path], out: Path, precision: str) -> float:
        spec = build_spec({
            "job": "batch", "task": "boxes", "images": [str(p) for p in chunk],
            "out": str(out), "shards": 1, "device": args.device, "batch_size": args.batch,
            "num_workers": args.workers,
            "options": {"method": args.method, "backbone": "dinov2_vits14",
                        "weights": str(weights), "size": args.size, "precision": precision}})
        stop = threading.Event()
        sampler = threading.Thread(target=rss_sampler, args=(samples, stop), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        batch_job.run(spec, new_run_dir(spec, tmp / "runs"))
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        return elapsed

    for start in range(0, len(images), args.chunk):
        chunk = images[start:start + args.chunk]
        t0 = time.perf_counter()
        run = drive(compute_boxes(chunk, args.method, backbone="dinov2_vits14",
                                  weights=str(weights), device=args.device, size=args.size))
        times["interactive"] += time.perf_counter() - t0
        preds["interactive"].update(run.boxset.boxes)
        for key, precision in (("batch", "float32"), ("batch_bf16", "bf16")):
            out = tmp / f"{key}_{start}.json"
            times[key] += batch(chunk, out, precision)
            preds[key].update(read_boxes(out).boxes)
        print(f"  images {start}-{start + len(chunk)}: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + " so far", flush=True)
    n = len(images)
    rate = {k: n / v for k, v in times.items()}
    ref = preds["interactive"]

    def same(key: str) -> int:
        return sum([b.xyxy() for b in preds[key].get(k, [])] == [b.xyxy() for b in v]
                   for k, v in ref.items())

    def close(key: str) -> int:
        return sum(bool(v) and bool(preds[key].get(k)) and iou(preds[key][k][0], v[0]) >= 0.9
                   for k, v in ref.items())

    mb = [rss / 2**20 for _, rss in samples]
    third = max(1, len(mb) // 3)
    print(f"\n## Batch vs interactive boxes ({n} raccoon_voc photos, {args.size} px, "
          f"{args.method}, DINOv2-S, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)\n")
    print("| path | images/s | ratio | same boxes | IoU >= 0.9 | CorLoc |")
    print("|---|---|---|---|---|---|")
    labels = {"interactive": "interactive (one forward per image, float32)",
              "batch": f"batch job, float32 (batch {args.batch}, {args.workers} loader workers, "
                       "+ QC)",
              "batch_bf16": "batch job, `--precision bf16` (same, bf16 autocast)"}
    for key, label in labels.items():
        print(f"| {label} | {rate[key]:.2f} | {rate[key] / rate['interactive']:.2f} | "
              f"{same(key)}/{n} | {close(key)}/{n} | {100 * corloc(preds[key], truth):.1f} |")
    print(f"\nbatch worker RSS: first third {max(mb[:third]):.0f} MiB, last third "
          f"{max(mb[-third:]):.0f} MiB, peak {max(mb):.0f} MiB ({len(mb)} samples)")

if __name__ == "__main__":
    main()
