"""Label-budget sweep: accuracy against labelled images per class (the seed's benchmark).

For each budget ``n`` and repeat ``r``, ``n`` training images per class are drawn (stratified,
seeded by ``(seed, n, r)``); k-NN and a linear classifier are fitted on their frozen features
of each backbone and scored on the whole val set. With a supervised baseline
(:mod:`.supervised`), a model trained from scratch on the *images* of exactly the same subset
adds rows with method ``supervised`` (backbone: its architecture). Budgets above the smallest
class are refused before any feature is computed or any model trained.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
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


def subset_seed(seed: int, n: int, r: int) -> int:
    """The seed of the subset of budget ``n``, repeat ``r``: every method draws the same one."""
    return seed * 1_000_003 + n * 1009 + r


def sweep(feature_sets: dict[str, Any], budgets: list[int], repeats: int = 3, seed: int = 0,
          k: int = 20, linear_epochs: int = 100, linear_lr: float = 0.001,
          supervised: tuple[Any, Any] | None = None,
          used: dict[tuple[str, str, int, int], np.ndarray] | None = None,
          on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Rows (backbone, method, labels_per_class, repeat, top1) for every combination.

    ``supervised``: ``(ImageBank, SupervisedConfig)`` of :mod:`.supervised`; its labels must be
    the feature sets' (the same folder in the same order), so the subset of ``(n, r)`` is the
    same for every method. ``used`` (if given) receives the training indices each row was
    computed from, keyed ``(backbone, method, n, r)``; ``on_row`` is called with each row.
    """
    import torch

    from headless.train.ssl.knn import knn_classify
    from headless.train.ssl.linear import train_linear

    if supervised is not None:
        bank = supervised[0]
        check_budgets(bank.train_y.tolist(), bank.classes, budgets)
        for name, f in feature_sets.items():
            if not np.array_equal(f.train_y, bank.train_y) or \
                    not np.array_equal(f.val_y, bank.val_y):
                raise ValueError(f"the supervised baseline's images are not {name}'s labelled "
                                 "set (labels differ): build both from the same folders")
    used = {} if used is None else used

    def add(row: dict[str, Any], idx: np.ndarray) -> None:
        rows.append(row)
        used[(row["backbone"], row["method"], row["labels_per_class"], row["repeat"])] = idx
        if on_row is not None:
            on_row(row)

    rows: list[dict[str, Any]] = []
    for name, f in feature_sets.items():
        nc = len(f.classes)
        check_budgets(f.train_y.tolist(), f.classes, budgets)
        for n in budgets:
            for r in range(repeats):
                idx = stratified_subset(f.train_y, n, subset_seed(seed, n, r))
                tx, ty = torch.from_numpy(f.train_x[idx]), torch.from_numpy(f.train_y[idx])
                vx, vy = torch.from_numpy(f.val_x), torch.from_numpy(f.val_y)
                knn = knn_classify(tx, ty, vx, vy, ks=(min(k, len(idx)),), num_classes=nc)[0]
                lin = train_linear(tx, ty, vx, vy, nc, linear_epochs, linear_lr, seed=r)
                for method, top1 in (("knn", knn.top1), ("linear", lin.top1)):
                    add({"backbone": name, "method": method, "labels_per_class": n,
                         "repeat": r, "top1": round(top1, 4)}, idx)
    if supervised is not None:
        from headless.train.ssl.supervised import train_supervised

        bank, cfg = supervised
        for n in budgets:
            for r in range(repeats):
                idx = stratified_subset(bank.train_y, n, subset_seed(seed, n, r))
                res = train_supervised(bank, idx, cfg, seed=subset_seed(seed, n, r))
                add({"backbone": cfg.arch, "method": "supervised", "labels_per_class": n,
                     "repeat": r, "top1": round(res.top1, 4)}, res.indices)
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
