"""A trained fgvc run evaluated on one of its splits, and its predictions for new images.

Both are progress generators (the CLI drives them with tqdm, napari in a worker); the image
pipeline is the run's own evaluation transform (resize to 8/7 of the size, centre crop).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headless.progress import Progress, ProgressGen
from headless.train.data.errors import DatasetError

SPLITS = ("train", "val", "test")


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate_run_iter(run_dir: str | Path, split: str = "test", batch_size: int = 16,
                      device: str = "cpu") -> ProgressGen[Any]:
    """Top-1 / top-5 and the confusion matrix of a run on ``split``; yields progress."""
    import torch

    from headless.train.data.dataset import ClassifierDataset
    from headless.train.data.transforms import eval_transform
    from headless.train.evaluate import evaluate
    from headless.train.fgvc.build import load_fgvc
    from headless.train.fgvc.datasets import read_splits

    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    run = load_fgvc(run_dir, device)
    splits = read_splits(run.spec.data, run.spec.seed)
    samples = getattr(splits, split)
    if not samples:
        raise DatasetError(f"{run_dir}: the {split} split of its dataset is empty")
    if splits.classes != run.classes:
        raise DatasetError(f"{run_dir}: the dataset's classes differ from the run's")
    ds = ClassifierDataset(samples, eval_transform(run.image_size, run.mean, run.std))
    chunks = _batches(len(ds), batch_size)
    results = []
    for i, chunk in enumerate(chunks):
        items = [ds[j] for j in chunk]
        batch = (torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items]))
        results.append(evaluate(run.model, [batch], len(run.classes), device, 0.0, run.classes))
        yield Progress(i + 1, len(chunks), f"{split}: batch {i + 1}/{len(chunks)}")
    out = results[0]
    for r in results[1:]:
        out.confusion = out.confusion + r.confusion
        out.top5_correct += r.top5_correct
        out.loss_sum += r.loss_sum
    return out


def evaluate_run(run_dir: str | Path, split: str = "test", batch_size: int = 16,
                 device: str = "cpu") -> Any:
    from headless.progress import run

    return run(evaluate_run_iter(run_dir, split, batch_size, device))


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]]  # (class, probability), best first


def predict_iter(run_dir: str | Path, images: list[Path], top: int = 5, batch_size: int = 16,
                 device: str = "cpu") -> ProgressGen[list[Prediction]]:
    """The ``top`` classes with their softmax probabilities for each image."""
    import torch

    from headless.train.data.dataset import ClassifierDataset
    from headless.train.data.transforms import eval_transform
    from headless.train.fgvc.build import load_fgvc

    if not images:
        raise DatasetError("no images to predict")
    run = load_fgvc(run_dir, device)
    ds = ClassifierDataset([(Path(p), 0) for p in images],
                           eval_transform(run.image_size, run.mean, run.std))
    k = min(top, len(run.classes))
    out: list[Prediction] = []
    chunks = _batches(len(ds), batch_size)
    for i, chunk in enumerate(chunks):
        x = torch.stack([ds[j][0] for j in chunk]).to(device)
        with torch.no_grad():
            prob = run.model(x).float().softmax(-1).cpu()
        p, idx = prob.topk(k, dim=1)
        for j, row_p, row_i in zip(chunk, p.tolist(), idx.tolist()):
            out.append(Prediction(ds.samples[j][0],
                                  [(run.classes[c], float(q)) for c, q in zip(row_i, row_p)]))
        yield Progress(i + 1, len(chunks), f"batch {i + 1}/{len(chunks)}")
    return out


def predictions_csv(preds: list[Prediction]) -> str:
    """``path,class_1,prob_1,...,class_k,prob_k``, one row per image."""
    k = max((len(p.top) for p in preds), default=0)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", *[f"{n}_{i}" for i in range(1, k + 1) for n in ("class", "prob")]])
    for p in preds:
        w.writerow([str(p.path), *[v for c, q in p.top for v in (c, f"{q:.6f}")]])
    return buf.getvalue()
