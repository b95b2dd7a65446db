"""Embedding explorer: a 2-D map of a folder's features and scores that find odd images.

``knn_distance``: cosine distance to the k-th nearest other image (isolated images score high);
``lof``: scikit-learn's local outlier factor (cosine metric; > 1 = less dense than its
neighbours); with labels, ``mislabel``: 1 - the k-NN vote share of the image's own label,
its own vote excluded (an image among another class scores near 1). The map is UMAP
(umap-learn, the ``ssl`` extra) when installed, else PCA, and the result says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Embedding:
    xy: np.ndarray  # (N, 2)
    projection: str
    knn_distance: np.ndarray
    lof: np.ndarray
    mislabel: np.ndarray | None
    predicted: np.ndarray | None

    def ranking(self, score: str = "knn_distance") -> np.ndarray:
        """Indices from the most to the least unusual by ``score``."""
        values = getattr(self, score)
        return np.argsort(-values, kind="stable")


def project_2d(x: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise ImportError(
                    "UMAP needs umap-learn: pip install 'napari-dinoseg[ssl]'") from None
        else:
            n = min(15, max(2, len(x) - 1))
            reducer = umap.UMAP(n_neighbors=n, metric="cosine", random_state=seed)
            return reducer.fit_transform(x).astype(np.float32), "umap"
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return (xc @ vt[:2].T).astype(np.float32), "pca"


def outlier_scores(x: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the k-th other neighbour, local outlier factor) on cosine geometry."""
    import torch
    from sklearn.neighbors import LocalOutlierFactor

    from headless.train.ssl.knn import topk_neighbours

    k = min(k, len(x) - 1)
    t = torch.nn.functional.normalize(torch.from_numpy(x).float(), dim=1)
    sims, _ = topk_neighbours(t, t, k + 1)  # the first is (nearly always) the image itself
    kth = 1.0 - sims[:, k].numpy()
    lof = LocalOutlierFactor(n_neighbors=k, metric="cosine")
    lof.fit(x)
    return kth.astype(np.float32), (-lof.negative_outlier_factor_).astype(np.float32)


def mislabel_scores(x: np.ndarray, labels: np.ndarray, k: int = 10,
                    temperature: float = 0.07) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from headless.train.ssl.knn import knn_predict

    t, y = torch.from_numpy(x), torch.from_numpy(labels).long()
    shares, pred = knn_predict(t, y, t, min(k, len(x) - 1), int(labels.max()) + 1,
                               temperature, exclude_self=True)
    own = shares.gather(1, y.view(-1, 1)).squeeze(1)
    return (1.0 - own).numpy().astype(np.float32), pred.numpy()


def explore(x: np.ndarray, labels: np.ndarray | None = None, k: int = 10,
            projection: str = "auto", seed: int = 0) -> Embedding:
    if len(x) < 3:
        raise ValueError(f"the embedding explorer needs at least 3 images, got {len(x)}")
    xy, how = project_2d(x, projection, seed)
    kth, lof = outlier_scores(x, k)
    mis = pred = None
    if labels is not None:
        mis, pred = mislabel_scores(x, labels, k)
    return Embedding(xy, how, kth, lof, mis, pred)


def write_csv(path: str | Path, paths: list[Path], emb: Embedding,
              labels: np.ndarray | None, classes: list[str] | None) -> Path:
    import csv
    import io

    from headless.store import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "predicted", "x", "y", "knn_distance", "lof", "mislabel"])
    for i in emb.ranking("knn_distance"):
        lab = classes[labels[i]] if labels is not None and classes else ""
        pr = classes[emb.predicted[i]] if emb.predicted is not None and classes else ""
        w.writerow([str(paths[i]), lab, pr, f"{emb.xy[i, 0]:.5f}", f"{emb.xy[i, 1]:.5f}",
                    f"{emb.knn_distance[i]:.6f}", f"{emb.lof[i]:.6f}",
                    "" if emb.mislabel is None else f"{emb.mislabel[i]:.6f}"])
    return atomic_write_text(path, buf.getvalue())
