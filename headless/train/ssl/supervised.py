"""The label-budget sweep's supervised baseline: a model trained from scratch on the same labels.

For every budget and repeat the sweep draws one stratified subset of the training images
(:func:`~headless.train.ssl.sweep.stratified_subset`); k-NN and the linear classifier see the
frozen features of that subset, and :func:`train_supervised` trains a network from random
initialisation on the *images* of exactly that subset, scored on the same whole val set.

Choices (kept small so a sweep stays cheap on a CPU):

- model: a torchvision ResNet (``resnet18`` by default, ``resnet34`` / ``resnet50``) or the
  tiny three-block ResNet of the tests (``test_resnet_tiny``), built by the classifier's
  :func:`~headless.train.classifier.models.build_model` with random weights and a linear head;
- images: read once (:func:`~headless.train.data.dataset.load_rgb_uint8`), the short side
  resized (bicubic) to ``size * 256 / 224`` and centre-cropped to that square, kept as uint8;
  validation uses its centre ``size`` crop, i.e. exactly what the frozen backbone sees
  (:func:`~headless.train.ssl.extract.eval_transform`);
- light augmentation: a random ``size`` crop of that square and a horizontal flip;
- AdamW (lr 1e-3, weight decay 1e-4), cosine to 0 over ``epochs`` passes over the labelled
  subset (``ceil(n / batch)`` steps each: few labels, few steps), cross-entropy;
- seeded: the initial weights by ``seed``, the batch order and the crops by a generator of the
  same seed, so a rerun on the CPU gives the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUPERVISED_ARCHS = ("resnet18", "resnet34", "resnet50", "test_resnet_tiny")


def _stored_side(size: int) -> int:
    return int(round(size * 256 / 224))


def read_square(path: Path, size: int) -> np.ndarray:
    """(S, S, 3) uint8: short side resized to ``size * 256 / 224`` (bicubic), centre square."""
    from PIL import Image
    from torchvision import transforms as T

    from headless.train.data.dataset import load_rgb_uint8

    side = _stored_side(size)
    tf = T.Compose([T.Resize(side, interpolation=T.InterpolationMode.BICUBIC),
                    T.CenterCrop(side)])
    return np.asarray(tf(Image.fromarray(load_rgb_uint8(path))), dtype=np.uint8)


@dataclass
class ImageBank:
    """The sweep's labelled images, in the order of :func:`~.labelled.load_labelled` (the order
    of the feature sets' ``train_y`` / ``val_y``). A training image is read the first time a
    subset needs it, the val set once; both stay in memory as uint8."""

    classes: list[str]
    train_paths: list[Path]
    train_y: np.ndarray
    val_paths: list[Path]
    val_y: np.ndarray
    size: int = 224
    _train: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _val: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_labelled(cls, lab: object, size: int = 224) -> ImageBank:
        train, val = lab.train, lab.val  # type: ignore[attr-defined]
        return cls(list(lab.classes), [p for p, _ in train],  # type: ignore[attr-defined]
                   np.array([c for _, c in train], dtype=np.int64), [p for p, _ in val],
                   np.array([c for _, c in val], dtype=np.int64), size)

    def train_images(self, idx: np.ndarray) -> np.ndarray:
        for i in idx.tolist():
            if i not in self._train:
                self._train[i] = read_square(self.train_paths[i], self.size)
        return np.stack([self._train[i] for i in idx.tolist()])

    def val_images(self) -> np.ndarray:
        if self._val is None:
            self._val = np.stack([read_square(p, self.size) for p in self.val_paths])
        return self._val


@dataclass
class SupervisedConfig:
    arch: str = "resnet18"
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.arch not in SUPERVISED_ARCHS:
            raise ValueError(f"supervised model {self.arch!r} is not one of "
                             f"{', '.join(SUPERVISED_ARCHS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("supervised epochs and batch size must be at least 1")


@dataclass
class SupervisedResult:
    top1: float  # percent
    top5: float
    steps: int
    indices: np.ndarray  # the training images it was trained on (indices into the bank)


def _to_batch(imgs: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
              device: str):  # noqa: ANN202 - a torch tensor
    import torch

    x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - m) / s).to(device)


def augment(imgs: np.ndarray, size: int, g: object) -> np.ndarray:
    """A random ``size`` crop of each stored square and a horizontal flip (p = 0.5), drawn from
    the torch generator ``g``."""
    import torch

    side = imgs.shape[1]
    out = np.empty((len(imgs), size, size, 3), np.uint8)
    span = side - size + 1
    draws = torch.randint(0, span * span * 2, (len(imgs),), generator=g).tolist()
    for j, d in enumerate(draws):
        flip, off = divmod(d, span * span)
        y0, x0 = divmod(off, span)
        crop = imgs[j, y0:y0 + size, x0:x0 + size]
        out[j] = crop[:, ::-1] if flip else crop
    return out


def centre(imgs: np.ndarray, size: int) -> np.ndarray:
    o = (imgs.shape[1] - size) // 2
    return imgs[:, o:o + size, o:o + size]


def _batches(order: list[int], batch: int) -> list[list[int]]:
    """Batches of ``order``; a last batch of one image joins the one before (batch norm)."""
    out = [order[i:i + batch] for i in range(0, len(order), batch)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] += out.pop()
    return out


def train_supervised(bank: ImageBank, idx: np.ndarray, cfg: SupervisedConfig,
                     seed: int = 0) -> SupervisedResult:
    """Train ``cfg.arch`` from random weights on the training images ``idx`` of ``bank``;
    top-1 / top-5 (percent) on all of the bank's val images."""
    import torch
    from torch import nn

    from headless.features.backbones import resolve_device
    from headless.jobs.spec import ModelConfig
    from headless.train.classifier.models import build_model
    from headless.train.ssl.linear import topk_accuracy

    idx = np.asarray(idx, dtype=np.int64)
    device = resolve_device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = build_model(ModelConfig(type=cfg.arch, weights=None), len(bank.classes))
    model, mean, std = built.model.to(device), built.mean, built.std
    g = torch.Generator().manual_seed(seed)
    imgs = bank.train_images(idx)
    labels = torch.from_numpy(bank.train_y[idx])
    if len(idx) == 1:  # batch norm needs two samples: the one image, cropped twice
        imgs, labels = np.concatenate([imgs, imgs]), labels.repeat(2)
    n = len(imgs)
    batch = min(cfg.batch_size, n)
    per_epoch = len(_batches(list(range(n)), batch))
    total = cfg.epochs * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total)))
    crit = nn.CrossEntropyLoss()
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=g).tolist()
        for b in _batches(order, batch):
            x = _to_batch(augment(imgs[b], bank.size, g), mean, std, device)
            loss = crit(model(x), labels[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    val = bank.val_images()
    logits = []
    with torch.inference_mode():
        for b0 in range(0, len(val), max(cfg.batch_size, 64)):
            x = _to_batch(centre(val[b0:b0 + max(cfg.batch_size, 64)], bank.size), mean, std,
                          device)
            logits.append(model(x).float().cpu())
    out = torch.cat(logits)
    vy = torch.from_numpy(bank.val_y)
    return SupervisedResult(topk_accuracy(out, vy, 1), topk_accuracy(out, vy, 5), total, idx)
