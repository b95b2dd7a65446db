"""The training dataset (images with their boxes) and its resumable, shardable batch sampler.

Randomness is keyed, not sequential: the sample for key ``(epoch, index)`` is augmented under a
seed derived from ``(seed, epoch, index)``, and each epoch's order is a permutation seeded by
``(seed, epoch)``. Any worker count, and a resumed run that skips to step ``s``, therefore sees
exactly the pixels an uninterrupted run sees.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from headless.boxes import Box
from headless.images import ImageError
from headless.train.data.errors import DatasetError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (epoch, image) pair; independent of worker count and order."""
    ss = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index])
    return int(ss.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under fixed torch / numpy / random seeds and restore the outer states."""
    import torch

    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (2**32))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def load_rgb_uint8(path: Path) -> np.ndarray:
    """Any image file -> (H, W, 3) uint8 (grey repeated, alpha dropped, 16-bit scaled)."""
    from headless.images import read_image, to_rgb01

    arr = read_image(path)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3:
        return arr
    return (to_rgb01(arr) * 255.0 + 0.5).astype(np.uint8)


class ClassifierDataset:
    """Map-style dataset over ``(path, label)`` with boxes; keys are ``index`` or
    ``(epoch, index)``. Items are ``(image tensor, label)`` after ``transform``.

    The transform receives a dict ``{"image": tv_tensors.Image, "boxes": BoundingBoxes,
    "label": int, "index": int}`` so that box-aware crops can read and move the boxes; with an
    attention-map lookup, ``"attention"`` holds the image's cached density map.
    """

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        transform: Any,
        boxes: dict[Path, tuple[list[Box], tuple[int, int] | None]] | None = None,
        seed: int = 0,
        attention: Any = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.boxes = boxes or {}
        self.seed = seed
        self.attention = attention  # callable(index, path) -> map, or None

    def __len__(self) -> int:
        return len(self.samples)

    def boxes_for(self, index: int, width: int, height: int) -> np.ndarray:
        """The image's boxes in its own pixels, shape (N, 4) xyxy (scaled if drawn on a resize)."""
        path = self.samples[index][0]
        entry = self.boxes.get(path)
        if not entry:
            return np.zeros((0, 4), np.float32)
        boxes, size = entry
        sx = sy = 1.0
        if size and size[0] > 0 and size[1] > 0 and (size[0], size[1]) != (width, height):
            sx, sy = width / size[0], height / size[1]
        arr = np.array(
            [[b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy] for b in boxes], np.float32
        ).reshape(-1, 4)
        arr[:, [0, 2]] = arr[:, [0, 2]].clip(0, width)
        arr[:, [1, 3]] = arr[:, [1, 3]].clip(0, height)
        keep = (arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])
        return arr[keep]

    def sample(self, index: int) -> dict[str, Any]:
        import torch
        from torchvision import tv_tensors

        path, label = self.samples[index]
        try:
            rgb = load_rgb_uint8(path)
        except ImageError as exc:
            raise DatasetError(str(exc)) from None
        h, w = rgb.shape[:2]
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))
        boxes = tv_tensors.BoundingBoxes(
            torch.from_numpy(self.boxes_for(index, w, h)), format="XYXY", canvas_size=(h, w)
        )
        item: dict[str, Any] = {"image": image, "boxes": boxes, "label": label, "index": index}
        if self.attention is not None:
            attn = self.attention(index, path)
            if attn is not None:  # no map: the crop falls back to RandomResizedCrop
                item["attention"] = attn
        return item

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int]:
        if isinstance(key, tuple):
            epoch, index = key
        else:
            epoch, index = -1, int(key)
        item = self.sample(index)
        if self.transform is not None:
            with seeded(sample_seed(self.seed, epoch + 1, index)):
                item = self.transform(item)
        return item["image"], int(item["label"])


class EpochBatches:
    """Batch sampler for one epoch, resumable at any step and shardable over DDP ranks.

    The epoch's order is ``randperm(n)`` under seed ``(seed, epoch)``; step ``i`` takes global
    batch ``order[i*G:(i+1)*G]`` (``G = batch * world``) and rank ``r`` its ``r::world`` share.
    The last incomplete global batch is dropped (every step sees a full batch), except when the
    dataset is smaller than one global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start, self.rank, self.world = start, rank, world

    @staticmethod
    def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
        return max(1, n // (batch_size * world))

    def order(self) -> list[int]:
        import torch

        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1 & 0xFFFFFFFF))
        return torch.randperm(self.n, generator=g).tolist()

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch(self.n, self.batch_size, self.world) - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order()
        g = self.batch_size * self.world
        for i in range(self.start, self.steps_per_epoch(self.n, self.batch_size, self.world)):
            chunk = order[i * g:(i + 1) * g][self.rank::self.world]
            yield [(self.epoch, j) for j in chunk]
