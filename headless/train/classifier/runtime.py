"""Where a run executes: seeds and determinism, RNG state for checkpoints, DDP and the device.

The process group is the one torchrun / SLURM set up in the environment; a single process is a
world of one, so the training loop has one code path.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from headless.train.classifier.models import ModelError


def set_determinism(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a few CUDA kernels (adaptive pooling backward) have no deterministic
        # version; CPU training is exactly reproducible either way
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group that torchrun / SLURM set up in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(info.local_rank)
            dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(f"device {name!r} was asked for, but no CUDA GPU is available")
        if dist.enabled:
            return torch.device("cuda", dist.local_rank)
    return torch.device(name)


def any_rank(flag: bool, dist: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a stop request reaches all of them)."""
    if not dist.enabled:
        return flag
    import torch.distributed as tdist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)




def start_job(spec: Any, run_dir: Any, log: Any = None) -> tuple[DistInfo, Any, torch.device]:
    """What every training job does first: DDP (when under torchrun), the run log (rank 0
    writes), the device, seeds and determinism, CPU threads. Returns ``(dist, log, device)``."""
    from headless.jobs.runlog import RunLog

    use_cuda = spec.device.startswith("cuda") or (spec.device == "auto"
                                                  and torch.cuda.is_available())
    dist = init_distributed(use_cuda)
    log = log or RunLog(run_dir, enabled=dist.is_main)
    device = resolve_device(spec.device, dist)
    set_determinism(spec.seed, spec.deterministic)
    if spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    return dist, log, device


class IndexBatches:
    """Evaluation batches of plain indices, in order (this rank's share)."""

    def __init__(self, indices: list[int], batch_size: int) -> None:
        self.indices, self.batch_size = indices, batch_size

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Any:
        for i in range(0, len(self.indices), self.batch_size):
            yield self.indices[i:i + self.batch_size]


def make_loader(dataset: Any, batch_sampler: Any, num_workers: int, device: torch.device,
                seed: int) -> Any:
    """A DataLoader whose worker seeds come from ``seed`` (never the global RNG: exact resume)."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed))
