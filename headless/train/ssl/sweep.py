"""Label-budget sweep: accuracy against labelled images per class (the seed's benchmark).

For each budget ``n`` and repeat ``r``, ``n`` training images per class are drawn (stratified,
seeded by ``(seed, n, r)``); k-NN and a linear classifier are fitted on their frozen features
of each backbone and scored on the whole val set. Budgets above the smallest class are refused
before any feature is computed.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from headless.train.data.errors import DatasetError


def check_budgets(train_labels: list[int], classes: list[str], budgets: list[int]) -> None:
    counts = np.bincount(np.asarray(train_labels), minlength=len(classes))
    smallest = int(counts.min())
    too_many = [b for b in budgets if b > smallest]
    if too_many or not budgets or min(budgets) < 1:
        c = classes[int(counts.argmin())]
        raise DatasetError(
            f"label budgets {too_many or budgets} ask for more labelled images per class than "
            f"exist: class {c!r} has {smallest} training images (budgets must be 1..{smallest})")


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), n, replace=False)
             for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def sweep(feature_sets: dict[str, Any], budgets: list[int], repeats: int = 3, seed: int = 0,
          k: int = 20, linear_epochs: int = 100, linear_lr: float = 0.001) -> list[dict[str, Any]]:
    """Rows (backbone, method, labels_per_class, repeat, top1) for every combination."""
    import torch

    from headless.train.ssl.knn import knn_classify
    from headless.train.ssl.linear import train_linear

    rows = []
    for name, f in feature_sets.items():
        nc = len(f.classes)
        check_budgets(f.train_y.tolist(), f.classes, budgets)
        for n in budgets:
            for r in range(repeats):
                idx = stratified_subset(f.train_y, n, seed * 1_000_003 + n * 1009 + r)
                tx, ty = torch.from_numpy(f.train_x[idx]), torch.from_numpy(f.train_y[idx])
                vx, vy = torch.from_numpy(f.val_x), torch.from_numpy(f.val_y)
                knn = knn_classify(tx, ty, vx, vy, ks=(min(k, len(idx)),), num_classes=nc)[0]
                lin = train_linear(tx, ty, vx, vy, nc, linear_epochs, linear_lr, seed=r)
                for method, top1 in (("knn", knn.top1), ("linear", lin.top1)):
                    rows.append({"backbone": name, "method": method, "labels_per_class": n,
                                 "repeat": r, "top1": round(top1, 4)})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """(backbone / method) -> (budgets, mean top-1 over repeats)."""
    out: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        out.setdefault(f"{r['backbone']} {r['method']}", {}).setdefault(
            r["labels_per_class"], []).append(r["top1"])
    return {k: (sorted(v), [float(np.mean(v[b])) for b in sorted(v)]) for k, v in out.items()}


def write_outputs(rows: list[dict[str, Any]], csv_path: str | Path,
                  png_path: str | Path | None = None) -> None:
    import io

    from headless.store import atomic_write_text
    from headless.train.ssl.plot import line_plot

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())
    if png_path:
        line_plot(png_path, summarise(rows), "top-1 against labelled images per class",
                  "labelled images per class", "top-1 %")
