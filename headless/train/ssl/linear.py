"""Linear evaluation on frozen features (DINO's ``eval_linear.py`` on cached features).

A ``LinearClassifier`` (weights N(0, 0.01), bias 0) trained with SGD (momentum 0.9, no weight
decay), lr ``lr * batch / 256`` annealed per epoch by a cosine to 0, on features extracted once
(:mod:`.extract`: CLS of the last ``n_last_blocks`` blocks, optionally with the average patch
token). Unlike the reference, images are not re-augmented every epoch: the features are computed
once from the centre crop, which is what makes the label-budget sweep cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


class LinearClassifier(nn.Module):
    def __init__(self, dim: int, num_labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_labels)
        self.linear.weight.data.normal_(mean=0.0, std=0.01)
        self.linear.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.view(x.size(0), -1))


@dataclass
class LinearResult:
    top1: float  # percent
    top5: float
    epochs: int
    lr: float
    model: LinearClassifier

    def as_dict(self) -> dict[str, float]:
        return {"linear_top1": self.top1, "linear_top5": self.top5}


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels.view(-1, 1)).any(1).float().mean()) * 100.0


def train_linear(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                 val_y: torch.Tensor, num_classes: int, epochs: int = 100, lr: float = 0.001,
                 batch_size: int = 256, seed: int = 0) -> LinearResult:
    """Train on (train_x, train_y), report top-1 / top-5 (percent) on (val_x, val_y)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = LinearClassifier(train_x.shape[1], num_classes)
    batch = min(batch_size, len(train_x))
    scaled = lr * batch / 256.0
    opt = torch.optim.SGD(clf.parameters(), lr=scaled, momentum=0.9, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, eta_min=0)
    crit = nn.CrossEntropyLoss()
    x, y = train_x.float(), train_y.long()
    steps = math.ceil(len(x) / batch)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            loss = crit(clf(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        logits = clf(val_x.float())
    return LinearResult(topk_accuracy(logits, val_y, 1), topk_accuracy(logits, val_y, 5),
                        epochs, scaled, clf)
