"""k-NN and linear evaluation of a backbone on labelled train / val folders (engine of
``dinoseg eval-knn`` / ``eval-linear`` and of the label-budget sweep)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headless.progress import Progress


@dataclass
class LabelledFeatures:
    classes: list[str]
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    train_paths: list[Path]
    val_paths: list[Path]
    label: str


def labelled_features(
    backbone: str | None, weights: str | None, root: str | Path | None = None,
    train: str | Path | None = None, val: str | Path | None = None, size: int = 224,
    batch_size: int = 32, device: str = "auto", mode: str = "cls", n_last_blocks: int = 1,
    avgpool: bool = False, cache: Any = True,
) -> Generator[Progress, None, LabelledFeatures]:
    """Check the folders first (classes must agree), then load the model and extract."""
    from headless.train.ssl.extract import extract_features, open_model
    from headless.train.ssl.labelled import load_labelled

    lab = load_labelled(root, train, val)
    fm = open_model(backbone, weights, device)
    tr_paths = [p for p, _ in lab.train]
    va_paths = [p for p, _ in lab.val]
    tr = yield from extract_features(fm, tr_paths, size, batch_size, mode, n_last_blocks,
                                     avgpool, cache)
    va = yield from extract_features(fm, va_paths, size, batch_size, mode, n_last_blocks,
                                     avgpool, cache)
    return LabelledFeatures(lab.classes, tr, np.array([c for _, c in lab.train]), va,
                            np.array([c for _, c in lab.val]), tr_paths, va_paths, fm.label)


def eval_knn(feats: LabelledFeatures, ks: tuple[int, ...] = (10, 20, 100, 200),
             temperature: float = 0.07) -> dict[str, Any]:
    import torch

    from headless.train.ssl.knn import knn_classify

    res = knn_classify(torch.from_numpy(feats.train_x), torch.from_numpy(feats.train_y),
                       torch.from_numpy(feats.val_x), torch.from_numpy(feats.val_y), ks,
                       temperature, num_classes=len(feats.classes))
    out: dict[str, Any] = {"backbone": feats.label, "n_train": len(feats.train_y),
                           "n_val": len(feats.val_y), "classes": feats.classes,
                           "temperature": temperature}
    for r in res:
        out.update(r.as_dict())
    return out


def eval_linear(feats: LabelledFeatures, epochs: int = 100, lr: float = 0.001,
                batch_size: int = 256, seed: int = 0) -> dict[str, Any]:
    import torch

    from headless.train.ssl.linear import train_linear

    res = train_linear(torch.from_numpy(feats.train_x), torch.from_numpy(feats.train_y),
                       torch.from_numpy(feats.val_x), torch.from_numpy(feats.val_y),
                       len(feats.classes), epochs, lr, batch_size, seed)
    return {"backbone": feats.label, "n_train": len(feats.train_y), "n_val": len(feats.val_y),
            "classes": feats.classes, "epochs": epochs, "lr_scaled": res.lr, **res.as_dict()}
