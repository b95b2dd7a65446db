"""DINO benchmarks (not collected by pytest): printed figures, measured side by side.

1. Pre-training step time against facebookresearch/dino's own model, head and loss for the same
   architecture, crops and batch (``--ref PATH`` = a checkout of facebookresearch/dino; its
   classes are imported from there, never copied): ratio ours / reference, target <= 1.0.
2. Chunked k-NN: peak memory above the stored features, for a growing number of training
   features at a fixed chunk size (each size in a fresh process): it must stay flat.

    python tests/benchmarks/bench_dino.py --ref /path/to/dino [--device cuda] [--arch vit_small]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _step_fn(student, teacher, loss_fn, opt, crops, ema):
    import torch

    def step():
        t_out = teacher(crops[:2])
        s_out = student(crops)
        loss = loss_fn(s_out.float(), t_out.float(), 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
                pt.data.mul_(ema).add_((1 - ema) * ps.detach().data)
        if crops[0].is_cuda:
            torch.cuda.synchronize()
    return step


def bench_step(ref: str, device: str, arch: str, batch: int, n_local: int, out_dim: int,
               gsize: int, lsize: int, iters: int) -> dict:
    import torch

    sys.path.insert(0, ref)
    import main_dino as ref_main  # noqa: E402 - the reference checkout, imported only here
    import torch.distributed as dist
    import vision_transformer as ref_vits

    from headless.train.ssl.head import DINOHead, MultiCropWrapper
    from headless.train.ssl.loss import DINOLoss
    from headless.train.ssl.models import build_backbone

    if not dist.is_initialized():  # the reference's centre update all-reduces unconditionally
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29517", rank=0,
                                world_size=1)
    torch.manual_seed(0)
    crops = [torch.randn(batch, 3, gsize, gsize, device=device) for _ in range(2)]
    crops += [torch.randn(batch, 3, lsize, lsize, device=device) for _ in range(n_local)]
    nc = 2 + n_local

    def ours():
        s = MultiCropWrapper(build_backbone(arch, 16, 0.1), DINOHead(
            build_backbone(arch, 16).embed_dim, out_dim)).to(device)
        t = MultiCropWrapper(build_backbone(arch, 16), DINOHead(s.backbone.embed_dim,
                                                                out_dim)).to(device)
        t.load_state_dict(s.state_dict())
        t.requires_grad_(False)
        return s, t, DINOLoss(out_dim, nc, 0.04, 0.07, 0, 10).to(device)

    def theirs():
        fn = getattr(ref_vits, arch)
        s = ref_main.utils.MultiCropWrapper(fn(patch_size=16, drop_path_rate=0.1),
                                            ref_vits.DINOHead(fn().embed_dim, out_dim))
        t = ref_main.utils.MultiCropWrapper(fn(patch_size=16),
                                            ref_vits.DINOHead(fn().embed_dim, out_dim))
        s, t = s.to(device), t.to(device)
        t.load_state_dict(s.state_dict())
        t.requires_grad_(False)
        return s, t, ref_main.DINOLoss(out_dim, nc, 0.04, 0.07, 0, 10).to(device)

    steps = {}
    for name, make in (("ours", ours), ("reference", theirs)):
        s, t, lf = make()
        opt = torch.optim.AdamW([p for p in s.parameters() if p.requires_grad], lr=1e-4)
        steps[name] = _step_fn(s, t, lf, opt, crops, 0.996)
        steps[name]()  # warm-up
    times = {k: [] for k in steps}
    for _ in range(iters):  # interleaved: both see the same machine load
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"arch": arch, "device": device, "batch": batch, "crops": f"2x{gsize} + "
            f"{n_local}x{lsize}", "ours_s": med["ours"], "reference_s": med["reference"],
            "ratio": med["ours"] / med["reference"]}


def _knn_child(n_train: int, n_query: int, dim: int, chunk: int) -> None:
    import os
    import threading

    import torch

    from headless.train.ssl.knn import knn_classify

    g = torch.Generator().manual_seed(0)
    tr = torch.nn.functional.normalize(torch.randn(n_train, dim, generator=g), dim=1)
    q = torch.nn.functional.normalize(torch.randn(n_query, dim, generator=g), dim=1)
    ytr = torch.randint(0, 100, (n_train,), generator=g)
    yq = torch.randint(0, 100, (n_query,), generator=g)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:  # the resident set, every 2 ms, while the k-NN runs
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    th = threading.Thread(target=sample)
    th.start()
    t0 = time.perf_counter()
    knn_classify(tr, ytr, q, yq, ks=(10, 20, 100, 200), num_classes=100, normalize=False,
                 query_chunk=chunk, train_chunk=16384)
    seconds = time.perf_counter() - t0
    done.set()
    th.join()
    print(json.dumps({"n_train": n_train, "n_query": n_query, "chunk": chunk,
                      "extra_peak_mb": (peak[0] - base) / 2**20, "seconds": seconds,
                      "whole_matrix_mb": n_train * n_query * 4 / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default=None, help="facebookresearch/dino checkout")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="vit_small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-local", type=int, default=8)
    ap.add_argument("--out-dim", type=int, default=65536)
    ap.add_argument("--global-size", type=int, default=224)
    ap.add_argument("--local-size", type=int, default=96)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--knn-train", type=int, nargs="+", default=[25000, 100000])
    ap.add_argument("--knn-query", type=int, default=10000)
    ap.add_argument("--knn-chunk", type=int, default=1024)
    ap.add_argument("--child", nargs=4, type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _knn_child(*a.child)
        return
    if a.ref:
        print(json.dumps(bench_step(a.ref, a.device, a.arch, a.batch, a.n_local, a.out_dim,
                                    a.global_size, a.local_size, a.iters)))
    for n in a.knn_train:
        subprocess.run([sys.executable, __file__, "--child", str(n), str(a.knn_query), "384",
                        str(a.knn_chunk)], check=True)


if __name__ == "__main__":
    main()
