"""Benchmark: HR-Dv2 vs stride reduction vs bilinear upsampling, ViT-S/14 on this machine.

    python tests/benchmarks/bench_highres.py                       # 224 448 896 1792
    python tests/benchmarks/bench_highres.py --sizes 224 448 --linear-check 1792

Weights are RANDOM (``dinov2_vits14``, weights="random"): no model hub is reachable here. Time and
memory of a forward pass do not depend on the weight values, so the numbers hold for the official
weights; the features themselves mean nothing.

Every measurement runs in its own subprocess so that its peak memory is that process's
``ru_maxrss`` (tracemalloc does not see torch's allocations); since that high-water mark is
already set by loading the model (~0.9 GB), a thread also samples the current RSS every 2 ms
during the measured call (the "during the call" column of the tables). Each HR measurement runs,
in the same process and interleaved, ``n_transforms`` single-image forwards of the same input and
then the HR call, so ``HR time / (n_transforms x one forward)`` compares numbers taken side by
side (target <= 1.2); the median over 3 rounds (1 round from 896 px) is reported, in wall-clock
and in CPU time (the latter is steadier on a shared machine).

Measurements predicted (from a FLOP model calibrated on the runs so far) to take longer than
``--cap`` seconds, or more than the remaining ``--budget``, are skipped with the reason printed;
their predicted time appears with a ``~``. The linear-map memory check (hr_linear, C = 4, 4
shifts, at ``--linear-check`` px; target: peak < 2 GB) is always run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

ARCH = "dinov2_vits14"
P, D, DEPTH = 14, 384, 12
METHODS: dict[str, dict] = {
    "bilinear": dict(mode="bilinear", n=1, stride=None),
    "HR 4 shifts": dict(mode="hr", shifts=4, n=5, stride=None),
    "HR 8 shifts": dict(mode="hr", shifts=8, n=9, stride=None),
    "HR 4 shifts + flips": dict(mode="hr", shifts=4, flips=True, n=15, stride=None),
    "stride P/2 (s=7)": dict(mode="hr", shifts=0, n=1, stride=7),
    "stride P/4 (s=3)": dict(mode="hr", shifts=0, n=1, stride=3),
}
LINEAR = "HR 4 shifts, linear C=4"


def tokens(size: int, stride: int | None) -> int:
    side = math.ceil(size / P) * P
    g = 1 + (side - P) // (stride or P)
    return g * g + 1


def forward_flops(t: int) -> float:
    """Multiply-adds x 2 of one ViT-S forward with t tokens: projections + MLP, and attention."""
    return DEPTH * (24.0 * t * D * D + 4.0 * t * t * D)


def method_flops(name: str, size: int) -> float:
    m = METHODS.get(name, dict(n=5, stride=None))
    return m["n"] * forward_flops(tokens(size, m["stride"]))


# ----------------------------------------------------------------------------- worker


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class _Sampler:
    """Current RSS polled every 2 ms in a thread: the peak during one call, even when the
    process's high-water mark (ru_maxrss) was set earlier by model loading."""

    def __init__(self) -> None:
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") / 2**20
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _now(self) -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._now())
            self._stop.wait(0.002)

    def __enter__(self) -> _Sampler:
        self.start_mb = self._now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    from headless.features.backbones import load_backbone
    from headless.features.dense import dense_features
    from headless.features.highres.linear import hr_linear
    from headless.features.highres.stride import patch_tokens
    from headless.progress import run

    size, name = spec["size"], spec["method"]
    bb = load_backbone(ARCH, weights="random")
    img = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    patch_tokens(bb, torch.randn(1, 3, 224, 224))  # warm-up
    base = _rss_mb()
    out: dict = dict(size=size, method=name, base_mb=base, weights=bb.weights_label)
    n = METHODS.get(name, dict(n=5))["n"]
    messages: list[str] = []

    def hr_call() -> np.ndarray:
        messages.clear()
        if name == LINEAR:
            w = np.random.default_rng(1).normal(size=(4, D)).astype(np.float32)
            return run(hr_linear(bb, img, w, np.zeros(4, np.float32), shifts=4),
                       lambda p: messages.append(p.message))
        m = {k: v for k, v in METHODS[name].items() if k not in ("n",)}
        mode = m.pop("mode")
        return run(dense_features(img, mode, bb, **m), lambda p: messages.append(p.message))

    def clocks() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    walls, cpus, ratios, cpu_ratios = [], [], [], []
    peak_call, start_call = 0.0, 0.0
    for _ in range(spec.get("rounds", 1)):
        if spec.get("one_forward"):
            # n x one forward, literally: n single-image forwards of the same input, run right
            # before the HR call so both see the same machine load
            from headless.features.forward import preprocess

            x, _ = preprocess(img, bb.spec)
            w0, c0 = clocks()
            for _ in range(n):
                patch_tokens(bb, x[None])
            w1, c1 = clocks()
            single_wall, single_cpu = w1 - w0, c1 - c0
        with _Sampler() as sampler:
            w0, c0 = clocks()
            res = hr_call()
            w1, c1 = clocks()
        peak_call, start_call = max(peak_call, sampler.peak), sampler.start_mb
        walls.append(w1 - w0)
        cpus.append(c1 - c0)
        if spec.get("one_forward"):
            ratios.append((w1 - w0) / single_wall)
            cpu_ratios.append((c1 - c0) / single_cpu)
            out["one_forward_s"] = single_wall / n
    out["time_s"] = sorted(walls)[len(walls) // 2]
    out["cpu_s"] = sorted(cpus)[len(cpus) // 2]
    if ratios:
        out["ratio"] = sorted(ratios)[len(ratios) // 2]
        out["cpu_ratio"] = sorted(cpu_ratios)[len(cpu_ratios) // 2]
    out["peak_mb"] = _rss_mb()
    out["call_start_mb"] = start_call
    out["call_peak_mb"] = peak_call
    out["shape"] = list(res.shape)
    out["passes"] = next((s for s in messages if "forward pass" in s), "")
    return out


# ----------------------------------------------------------------------------- driver


def measure(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout:.0f} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return dict(error=f"exit {proc.returncode}: {tail[0][:160]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896, 1792])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                    metavar="METHOD")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run")
    ap.add_argument("--cap", type=float, default=240.0, help="skip measurements predicted longer")
    ap.add_argument("--linear-check", type=int, default=1792, help="0 to skip")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    import torch

    from headless.features.highres.memory import estimate_memory

    print(f"# bench_highres: {ARCH} with RANDOM weights (no hub access; cost does not depend on "
          f"weights); CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    start = time.perf_counter()
    rate = None  # FLOP/s, recalibrated after each run
    startup = 15.0  # seconds to start a worker (imports, model)
    results: dict[tuple[str, int], dict] = {}

    def left() -> float:
        return args.budget - (time.perf_counter() - start)

    def run_one(name: str, size: int, forced: bool = False) -> None:
        nonlocal rate, startup
        flops = method_flops(name, size)
        hr_like = name.startswith("HR")
        n = METHODS.get(name, dict(n=5))["n"]
        one = forward_flops(tokens(size, None))
        rounds = 3 if one < 2e11 else 1
        work = rounds * (flops + (n * one if hr_like else 0.0))
        pred = None if rate is None else work / rate + startup
        if not forced and pred is not None and (pred > args.cap or pred > left()):
            why = "cap" if pred > args.cap else "remaining budget"
            results[(name, size)] = dict(skipped=f"predicted {pred:.0f} s > {why}", pred=pred)
            print(f"  skip {name} @ {size}: predicted {pred:.0f} s exceeds the {why} "
                  f"({args.cap:.0f} s cap, {left():.0f} s left)", flush=True)
            return
        spec = dict(size=size, method=name, one_forward=hr_like, rounds=rounds)
        t0 = time.perf_counter()
        timeout = max(600.0, 4 * pred) if pred else 600.0
        r = measure(spec, timeout)
        wall = time.perf_counter() - t0
        results[(name, size)] = r
        if "error" in r:
            print(f"  {name} @ {size}: ERROR {r['error']}", flush=True)
            return
        busy = rounds * (r["time_s"] + n * r.get("one_forward_s", 0.0))
        startup = max(5.0, wall - busy)
        rate = work / busy
        ratio = ""
        if hr_like:
            ratio = (f", ratio {r['ratio']:.2f} (CPU time {r['cpu_ratio']:.2f}) vs {n} x one "
                     f"forward of {r['one_forward_s']:.2f} s, median of {rounds}")
        print(f"  {name} @ {size}: {r['time_s']:.2f} s, peak {r['peak_mb']:.0f} MB "
              f"(baseline {r['base_mb']:.0f} MB; during the call {r['call_start_mb']:.0f} -> "
              f"{r['call_peak_mb']:.0f} MB){ratio}; {r['passes']}", flush=True)

    if args.linear_check:
        print(f"\n## linear-map memory check: hr_linear, C = 4, 4 shifts, "
              f"{args.linear_check} x {args.linear_check}")
        run_one(LINEAR, 224)  # calibrates the FLOP rate cheaply
        run_one(LINEAR, args.linear_check, forced=True)
    print("\n## measurements")
    for size in sorted(args.sizes):
        for name in args.methods:
            run_one(name, size)

    # ------------------------------------------------------------------ tables
    sizes = sorted(args.sizes)
    print("\n## time (s) / peak RSS during the call (MB, whole process incl. ~0.8 GB torch + "
          "model); ~ = predicted from the FLOP and memory models, not run")
    head = f"| {'method':24} | " + " | ".join(f"{s:>17}" for s in sizes) + " |"
    print(head)
    print("|" + "-" * 26 + "|" + "|".join("-" * 19 for _ in sizes) + "|")
    for name in args.methods:
        cells = []
        for s in sizes:
            r = results.get((name, s), {})
            if "time_s" in r:
                cells.append(f"{r['time_s']:7.2f} / {r['call_peak_mb']:6.0f}")
            elif "pred" in r:
                est = estimate_memory(
                    out_values=s * s * D, chunk=1, tokens=tokens(s, METHODS[name]["stride"]),
                    embed_dim=D, feat_channels=D, input_pixels=s * s, work_pixels=s * s)
                cells.append(f"~{r['pred']:6.0f} / ~{800 + est.total / 2**20:5.0f}")
            else:
                cells.append(f"{'error' if 'error' in r else '-':>17}")
        print(f"| {name:24} | " + " | ".join(f"{c:>17}" for c in cells) + " |")

    print("\n## cost relative to one plain forward at the same size "
          "(tokens per copy; FLOP-model ratio; measured ratio)")
    print(f"| {'method':24} | " + " | ".join(f"{s:>26}" for s in sizes) + " |")
    print("|" + "-" * 26 + "|" + "|".join("-" * 28 for _ in sizes) + "|")
    for name in args.methods:
        cells = []
        for s in sizes:
            model_ratio = method_flops(name, s) / forward_flops(tokens(s, None))
            r = results.get((name, s), {})
            base = results.get(("HR 4 shifts", s), {}).get("one_forward_s")
            meas = (f"{r['time_s'] / base:6.1f}x" if "time_s" in r and base else "     -")
            n_tok = tokens(s, METHODS[name]["stride"])
            cells.append(f"{n_tok:6d} tok; {model_ratio:6.1f}x; {meas}")
        print(f"| {name:24} | " + " | ".join(f"{c:>26}" for c in cells) + " |")

    print("\n## HR-Dv2 time / (n_transforms x one forward), target <= 1.2 "
          "(wall clock; CPU time in brackets)")
    for name in [m for m in args.methods if m.startswith("HR")]:
        vals = [f"{s}: {results[(name, s)]['ratio']:.2f} ({results[(name, s)]['cpu_ratio']:.2f})"
                for s in sizes if "ratio" in results.get((name, s), {})]
        print(f"  {name:24} " + ("  ".join(vals) if vals else "(not run)"))

    if args.linear_check:
        r = results.get((LINEAR, args.linear_check), {})
        if "peak_mb" in r:
            ok = r["peak_mb"] < 2000
            print(f"\n## linear map at {args.linear_check} px, C = 4: peak {r['peak_mb']:.0f} MB "
                  f"(baseline {r['base_mb']:.0f} MB), {r['time_s']:.0f} s, output {r['shape']} -> "
                  f"{'PASS' if ok else 'FAIL'} (< 2000 MB)")
        else:
            print(f"\n## linear map at {args.linear_check} px: {r.get('error', 'not run')}")
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
