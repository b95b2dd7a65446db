"""Evaluation of a classifier: top-1 / top-5 accuracy, loss, and the confusion matrix.

The confusion matrix is the primary result: accuracy, per-class recall and top-1 all follow
from it, it sums exactly over DDP ranks, and it is saved in the run folder (JSON and CSV) for
the GUI and for people. Rows are true classes, columns predicted classes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_CSV = "confusion_matrix.csv"


@dataclass
class EvalResult:
    """Counts over an evaluation set; the metrics are properties of the counts."""

    confusion: np.ndarray  # (C, C) int64, rows = true, columns = predicted
    top5_correct: int = 0
    loss_sum: float = 0.0
    classes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def acc1(self) -> float:
        return float(np.trace(self.confusion) / self.n) if self.n else float("nan")

    @property
    def acc5(self) -> float:
        """Top-k accuracy with k = min(5, number of classes)."""
        return float(self.top5_correct / self.n) if self.n else float("nan")

    @property
    def loss(self) -> float:
        return float(self.loss_sum / self.n) if self.n else float("nan")

    def per_class_recall(self) -> list[float | None]:
        rows = self.confusion.sum(axis=1)
        return [float(self.confusion[i, i] / r) if r else None for i, r in enumerate(rows)]

    def metrics(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}acc1": self.acc1, f"{prefix}acc5": self.acc5,
                f"{prefix}loss": self.loss, f"{prefix}n": self.n}


def topk_correct(logits: Any, labels: Any, k: int) -> int:
    """How many rows have their label among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels[:, None]).any(dim=1).sum().item())


def evaluate(
    model: Any,
    loader: Any,
    n_classes: int,
    device: Any = "cpu",
    label_smoothing: float = 0.0,
    classes: list[str] | None = None,
    distributed: bool = False,
    autocast_dtype: Any = None,
) -> EvalResult:
    """Run ``model`` over ``loader`` (batches of ``(images, labels)``) in eval mode."""
    import torch

    was_training = model.training
    model.eval()
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.int64)
    top5 = 0
    loss_sum = 0.0
    crit = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="sum")
    device_type = torch.device(device).type
    with torch.no_grad():
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device_type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                logits = model(images)
            logits = logits.float()
            loss_sum += float(crit(logits, labels).item())
            top5 += topk_correct(logits, labels, 5)
            pred = logits.argmax(dim=1)
            idx = (labels * n_classes + pred).cpu()
            confusion += torch.bincount(idx, minlength=n_classes * n_classes).view(
                n_classes, n_classes
            )
    if distributed:
        import torch.distributed as dist

        packed = torch.cat([confusion.flatten().double(),
                            torch.tensor([top5, loss_sum], dtype=torch.float64)])
        if dist.get_backend() == "nccl":
            packed = packed.to(device)
        dist.all_reduce(packed)
        packed = packed.cpu()
        confusion = packed[: n_classes * n_classes].round().long().view(n_classes, n_classes)
        top5, loss_sum = int(round(packed[-2].item())), float(packed[-1].item())
    model.train(was_training)
    return EvalResult(confusion.numpy(), top5, loss_sum, list(classes or []))


def confusion_to_csv(confusion: np.ndarray, classes: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, confusion.tolist()):
        writer.writerow([name, *row])
    return buf.getvalue()


def save_confusion(run_dir: str | Path, result: EvalResult, step: int | None = None,
                   which: str = "model") -> dict[str, Path]:
    """Write ``confusion_matrix.json`` and ``.csv`` in the run folder (atomically)."""
    from headless.store import atomic_write_json, atomic_write_text

    run_dir = Path(run_dir)
    classes = result.classes or [str(i) for i in range(result.confusion.shape[0])]
    payload = {
        "classes": classes,
        "matrix": result.confusion.astype(int).tolist(),
        "rows": "true class",
        "columns": "predicted class",
        "step": step,
        "weights": which,
        "acc1": result.acc1,
        "acc5": result.acc5,
        "per_class_recall": result.per_class_recall(),
    }
    j = atomic_write_json(run_dir / CONFUSION_JSON, payload)
    c = atomic_write_text(run_dir / CONFUSION_CSV, confusion_to_csv(result.confusion, classes))
    return {"json": j, "csv": c}


def load_confusion(run_dir: str | Path) -> dict[str, Any] | None:
    """The saved confusion matrix (``classes``, ``matrix``...) or None when there is none yet."""
    from headless.store import read_json

    path = Path(run_dir) / CONFUSION_JSON
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "matrix" in data else None
