"""Training data: an ImageFolder (one sub-folder per class) with boxes matched to its images.

Everything that can be wrong with the data is found by :func:`preflight` before a worker
starts: a missing or empty folder, a single class, boxes for images the folder does not hold.

Randomness is keyed, not sequential: the sample for key ``(epoch, index)`` is augmented under a
seed derived from ``(seed, epoch, index)``, and each epoch's order is a permutation seeded by
``(seed, epoch)``. Any worker count, and a resumed run that skips to step ``s``, therefore sees
exactly the pixels an uninterrupted run sees.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headless.boxes import Box
from headless.images import IMAGE_SUFFIXES, ImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """Training data that cannot be used; the message names the folder or file and the fix."""


@dataclass
class FolderIndex:
    """Images of an ImageFolder, sorted, with their class index."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for _, label in self.samples:
            out[self.classes[label]] += 1
        return out


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def scan_image_folder(root: str | Path, classes: list[str] | None = None) -> FolderIndex:
    """Index ``root/<class>/**/<image>``; with ``classes``, labels follow that list (val sets)."""
    root = Path(root).expanduser()
    if not str(root) or not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} is a file, not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    per_class = {d.name: _images_under(d) for d in class_dirs}
    per_class = {k: v for k, v in per_class.items() if v}
    if not per_class:
        if loose:
            raise DatasetError(
                f"{root} holds {len(loose)} images but no class sub-folders: an ImageFolder "
                "has one sub-folder per class (root/cat/1.jpg, root/dog/2.jpg)"
            )
        raise DatasetError(
            f"no images found in {root} (looked for {', '.join(IMAGE_SUFFIXES)} files in "
            "one sub-folder per class)"
        )
    if classes is None:
        classes = sorted(per_class)
        if len(classes) < 2:
            raise DatasetError(
                f"only one class ({classes[0]!r}) in {root}: a classifier needs at least two "
                "sub-folders of images, one per class"
            )
    else:
        extra = sorted(set(per_class) - set(classes))
        if extra:
            raise DatasetError(
                f"{root} has classes that the training set lacks: {', '.join(extra[:10])}"
            )
    index = {c: i for i, c in enumerate(classes)}
    samples = [(p, index[c]) for c in classes for p in per_class.get(c, [])]
    return FolderIndex(root=root, classes=list(classes), samples=samples)


@dataclass
class Split:
    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    roots: list[Path] = field(default_factory=list)
    how: str = ""


def _has_class_dirs(p: Path) -> bool:
    return p.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in p.iterdir())


def make_split(data: Any, seed: int) -> Split:
    """Train / validation images: ``val_root``, else ``root/train`` + ``root/val``, else a split.

    The split is stratified (``val_fraction`` of every class, at least one image of a class with
    two or more) and seeded, so it is the same on every resume and every rank.
    """
    if not data.root:
        raise DatasetError(
            "data.root is empty: choose the dataset folder (one sub-folder per class)"
        )
    root = Path(data.root).expanduser()
    if data.val_root:
        train = scan_image_folder(root)
        val = scan_image_folder(data.val_root, classes=train.classes)
        return Split(train.classes, train.samples, val.samples, [root, val.root], "val_root")
    if (root / "train").is_dir() and (root / "val").is_dir() and _has_class_dirs(root / "train") \
            and _has_class_dirs(root / "val"):
        train = scan_image_folder(root / "train")
        val = scan_image_folder(root / "val", classes=train.classes)
        return Split(train.classes, train.samples, val.samples, [root, root / "train",
                                                                  root / "val"], "train/val")
    full = scan_image_folder(root)
    if data.val_fraction <= 0:
        return Split(full.classes, full.samples, [], [root], "no validation")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(len(full.classes)):
        items = [s for s in full.samples if s[1] == label]
        order = rng.permutation(len(items))
        n_val = int(round(data.val_fraction * len(items)))
        if len(items) >= 2:
            n_val = min(max(n_val, 1), len(items) - 1)
        else:
            n_val = 0
        val += [items[i] for i in sorted(order[:n_val])]
        train += [items[i] for i in sorted(order[n_val:])]
    return Split(full.classes, train, val, [root], f"split {data.val_fraction:.0%}")


# ----------------------------------------------------------------------------------------------
# boxes


@dataclass
class BoxTable:
    """Boxes per image key (file name or path relative to the dataset root), and image sizes."""

    boxes: dict[str, list[Box]]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    source: str = ""


def read_box_table(path: str | Path) -> BoxTable:
    """Read exported boxes: COCO / VOC / CSV (``headless.boxes.read_boxes``), or a JSON mapping
    ``{image: [Box.to_dict(), ...]}`` (optionally ``{"boxes": ..., "sizes": ...}``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"boxes file {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"boxes file {path} is not readable JSON ({exc})") from None
        if isinstance(obj, dict) and not {"images", "annotations"} <= set(obj):
            return _box_table_from_mapping(obj, path)
    from headless import boxes as boxes_module

    reader = getattr(boxes_module, "read_boxes", None)
    if reader is None:
        raise DatasetError(
            f"{path}: reading {path.suffix or 'folder'} box files needs headless.boxes.read_boxes, "
            "which this version lacks; export the boxes as JSON"
        )
    try:
        box_set = reader(path)
    except (ValueError, KeyError, OSError) as exc:
        raise DatasetError(f"boxes file {path}: {exc}") from None
    sizes = {k: (int(v[0]), int(v[1])) for k, v in getattr(box_set, "sizes", {}).items()}
    return BoxTable({k: list(v) for k, v in box_set.boxes.items()}, sizes, str(path))


def _box_table_from_mapping(obj: dict[str, Any], path: Path) -> BoxTable:
    sizes: dict[str, tuple[int, int]] = {}
    if "boxes" in obj and isinstance(obj["boxes"], dict):
        sizes = {k: (int(v[0]), int(v[1])) for k, v in (obj.get("sizes") or {}).items()}
        obj = obj["boxes"]
    table: dict[str, list[Box]] = {}
    for key, items in obj.items():
        if not isinstance(items, list):
            raise DatasetError(f"boxes file {path}: entry {key!r} is not a list of boxes")
        try:
            table[key] = [Box.from_dict(b) for b in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"boxes file {path}: entry {key!r} has a bad box ({exc})") from None
    return BoxTable(table, sizes, str(path))


def match_boxes(
    samples: list[tuple[Path, int]], roots: list[Path], table: BoxTable
) -> dict[Path, tuple[list[Box], tuple[int, int] | None]]:
    """Image path -> (boxes, size the boxes were drawn on). Unknown images are an error.

    A key matches a path relative to any of ``roots`` (``cat/001.jpg``, ``train/cat/001.jpg``)
    or, when unique in the dataset, a bare file name.
    """
    by_rel: dict[str, Path] = {}
    by_name: dict[str, list[Path]] = {}
    for p, _ in samples:
        for r in roots:
            try:
                by_rel[p.relative_to(r).as_posix()] = p
            except ValueError:
                pass
        by_rel[str(p)] = p
        by_name.setdefault(p.name, []).append(p)
    out: dict[Path, tuple[list[Box], tuple[int, int] | None]] = {}
    missing, ambiguous = [], []
    for key, boxes in table.boxes.items():
        norm = key.replace("\\", "/")
        path = by_rel.get(norm)
        if path is None:
            hits = by_name.get(Path(norm).name, [])
            if len(hits) == 1:
                path = hits[0]
            elif len(hits) > 1:
                ambiguous.append(key)
                continue
        if path is None:
            missing.append(key)
            continue
        out[path] = (list(boxes), table.sizes.get(key))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"boxes file {table.source} has boxes for {len(missing)} image(s) that are not in the "
            f"dataset ({', '.join(str(r) for r in roots[:1])}): {shown}. Keys must be file names "
            "or paths relative to the dataset folder"
        )
    if ambiguous:
        raise DatasetError(
            f"boxes file {table.source}: file names {', '.join(ambiguous[:5])} occur in several "
            "class folders; use paths relative to the dataset folder (class/name.jpg)"
        )
    return out


# ----------------------------------------------------------------------------------------------
# the dataset


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


# ----------------------------------------------------------------------------------------------
# transforms


def colour_augment(p: float, augmix: bool = False) -> Any:
    """One colour-only operation with probability ``p`` (seed 000): colour jitter, autocontrast,
    equalize, posterize or solarize; geometry is left to the crop. ``augmix`` adds AugMix."""
    from torchvision.transforms import v2

    ops = [
        v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
        v2.RandomAutocontrast(p=1.0),
        v2.RandomEqualize(p=1.0),
        v2.RandomPosterize(bits=4, p=1.0),
        v2.RandomSolarize(threshold=128, p=1.0),
    ]
    steps = [v2.RandomApply([v2.RandomChoice(ops)], p=p)]
    if augmix:
        steps.append(v2.AugMix())
    return v2.Compose(steps)


def make_crop(crop: Any, size: int) -> Any:
    """The random crop named by ``crop.type`` (seed 000): RandomResizedCrop, or the box- or
    attention-guided crops of :mod:`headless.train.crops`."""
    from torchvision.transforms import v2

    if crop.type == "random_resized":
        return v2.RandomResizedCrop(size, scale=tuple(crop.scale), ratio=tuple(crop.ratio),
                                    antialias=True)
    try:
        from headless.train import crops
    except ImportError:
        raise DatasetError(
            f"crop.type {crop.type!r} needs headless.train.crops, which this version lacks"
        ) from None
    if crop.type == "localized":
        return crops.LocalizedRandomResizedCrop(
            size, thr=crop.thr, scale=tuple(crop.scale), ratio=tuple(crop.ratio)
        )
    return crops.AttentionDensityCrop(
        size, temperature=crop.temperature, scale=tuple(crop.scale), ratio=tuple(crop.ratio),
        minmax=crop.min_max, sigma=crop.sigma,
    )


class _DropExtras:
    """Final step: keep what the collate function needs."""

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"image": item["image"], "label": item["label"]}


def train_transform(spec: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = [make_crop(spec.crop, spec.data.image_size)]
    if spec.augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if spec.augment.enabled:
        steps.append(colour_augment(spec.augment.p, spec.augment.augmix))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)),
              _DropExtras()]
    return v2.Compose(steps)


def eval_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """Resize the short side to size * 8/7 and take the centre (the ImageNet convention)."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(int(round(size * 8 / 7)), antialias=True), v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)),
        _DropExtras(),
    ])


# ----------------------------------------------------------------------------------------------
# preflight


@dataclass
class DataPlan:
    """What a job will train on, established before it starts."""

    split: Split
    boxes: dict[Path, tuple[list[Box], tuple[int, int] | None]]

    def summary(self) -> dict[str, Any]:
        return {
            "classes": self.split.classes,
            "n_train": len(self.split.train),
            "n_val": len(self.split.val),
            "split": self.split.how,
            "n_images_with_boxes": len(self.boxes),
        }


def plan_data(spec: Any) -> DataPlan:
    """Split the dataset and match its boxes; raises :class:`DatasetError` on bad input."""
    split = make_split(spec.data, spec.seed)
    if not split.train:
        raise DatasetError(f"no training images in {spec.data.root}")
    boxes: dict[Path, tuple[list[Box], tuple[int, int] | None]] = {}
    if spec.data.boxes:
        table = read_box_table(spec.data.boxes)
        boxes = match_boxes(split.train + split.val, split.roots, table)
        if spec.crop.type == "localized" and not any(p in boxes for p, _ in split.train):
            raise DatasetError(
                f"boxes file {spec.data.boxes} matches none of the training images: the "
                "localized crop would never see a box"
            )
    return DataPlan(split, boxes)


def preflight(spec: Any) -> dict[str, Any]:
    """Every check that can be made before a worker starts (data, boxes, weights, sizes)."""
    plan = plan_data(spec)
    from headless.train.classifier import check_model

    check_model(spec)
    return plan.summary()
