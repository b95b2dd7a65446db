"""Attention maps for the attention crop: computed once before training, looked up per item."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from headless.jobs.runlog import RunLog
from headless.jobs.spec import ClassifierSpec
from headless.train.classifier.runtime import DistInfo


def attention_lookup(spec: ClassifierSpec, samples: list[tuple[Path, int]],
                     device: torch.device, dist: DistInfo, log: RunLog) -> AttentionLookup:
    """Attention maps for every training image, computed once in batches and cached on disk
    (:mod:`headless.train.attention_maps`), so the data loader only reads a few KB per image. Seed
    000 ran the ViT per item and measured data loading about 12x slower."""
    from headless.progress import run as drive
    from headless.train.attention_maps.compute import compute_attention_maps

    paths = [p for p, _ in samples]
    last = [-1.0]

    def report(p: Any) -> None:
        now = time.monotonic()
        if p.done == p.total or now - last[0] > 2.0:
            last[0] = now
            log.append("stage", stage="attention maps", done=p.done, total=p.total,
                       message=p.message)

    def compute() -> Any:
        gen = compute_attention_maps(
            spec.crop.attention_backbone, paths, size=spec.crop.attention_size,
            device=str(device), weights=spec.crop.attention_weights,
        )
        return drive(gen, report)

    rng = torch.get_rng_state()
    if dist.enabled:  # rank 0 fills the cache, the others then find every map in it
        import torch.distributed as tdist

        store = compute() if dist.is_main else None
        tdist.barrier()
        if store is None:
            store = compute()
    else:
        store = compute()
    torch.set_rng_state(rng)  # a random test backbone reseeds; the run's stream must not move
    missing = len(store.missing(paths))
    if missing:
        log.append("message", message=f"{missing} images have no attention map; they get "
                                      "RandomResizedCrop")
    return AttentionLookup(store, paths)


class AttentionLookup:
    """Picklable (DataLoader workers): image path -> its cached map as an ``AttentionMap``.

    Up to ``preload_limit`` maps (a few hundred bytes each) are read into memory once, so a
    lookup is a dict access instead of a stat, a hash and a file read per item; larger
    datasets read each map from the cache file when needed.
    """

    def __init__(self, store: Any, paths: list[Path] | None = None,
                 preload_limit: int = 300_000) -> None:
        self.store = store
        self.maps: dict[str, Any] | None = None
        if paths is not None and len(paths) <= preload_limit:
            self.maps = {str(p): store.get(p) for p in paths}

    def __call__(self, index: int, path: Path) -> Any:
        if self.maps is None:
            return self.store.attention_map(path)
        arr = self.maps.get(str(path))
        if arr is None:
            return None
        from headless.train.attention_maps.tensors import AttentionMap

        return AttentionMap(arr)
