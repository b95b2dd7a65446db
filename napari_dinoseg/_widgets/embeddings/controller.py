"""What the embedding explorer holds, without Qt or napari: the computed map and its scores.

:func:`compute` is the engine generator the dock runs in a worker (the same steps as
``dinoseg embed``); :class:`EmbeddingController` turns its result into what a napari Points
layer takes (coordinates, a colour value per point), the ranked list of unusual images to step
through, and the image to open for a selected point.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headless.progress import Progress

SCORES = ("knn_distance", "lof", "mislabel")


@dataclass
class EmbeddingResult:
    paths: list[Path]
    classes: list[str]
    labels: np.ndarray | None
    embedding: Any  # headless.train.ssl.explore.Embedding
    model_label: str


def folder_labels(folder: Path, paths: list[Path]) -> tuple[list[str], np.ndarray | None]:
    """Classes from the first sub-folder when every image sits in one, else no labels."""
    parts = [p.relative_to(folder).parts for p in paths]
    if not parts or any(len(x) < 2 for x in parts):
        return [], None
    classes = sorted({x[0] for x in parts})
    return classes, np.array([classes.index(x[0]) for x in parts])


def compute(folder: str | Path, backbone: str, weights: str, device: str = "auto",
            size: int = 224, k: int = 10, projection: str = "auto"
            ) -> Generator[Progress, None, EmbeddingResult]:
    from headless.train.ssl.data import list_pretext
    from headless.train.ssl.explore import explore
    from headless.train.ssl.extract import extract_features, open_model

    folder = Path(folder)
    paths = list_pretext(folder, "image folder")  # a missing / empty folder is named first
    classes, labels = folder_labels(folder, paths)
    fm = open_model(backbone, weights, device)
    x = yield from extract_features(fm, paths, size)
    yield Progress(len(paths), len(paths), "map and scores")
    return EmbeddingResult(paths, classes, labels, explore(x, labels, k, projection), fm.label)


@dataclass
class EmbeddingController:
    result: EmbeddingResult | None = None
    score: str = "knn_distance"
    position: int = -1  # index into the ranking
    _ranking: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    def set_result(self, result: EmbeddingResult) -> None:
        self.result = result
        if self.score == "mislabel" and result.labels is None:
            self.score = "knn_distance"
        self._rank()

    def set_score(self, score: str) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; choose {', '.join(SCORES)}")
        if score == "mislabel" and (self.result is None or self.result.labels is None):
            raise ValueError("mislabel scores need an ImageFolder (one sub-folder per class)")
        self.score = score
        self._rank()

    def _rank(self) -> None:
        self._ranking = self.result.embedding.ranking(self.score) if self.result else \
            np.zeros(0, int)
        self.position = -1

    def points(self) -> np.ndarray:
        """(N, 2) napari coordinates (row, column) = (y, x) of the map."""
        xy = self.result.embedding.xy
        return np.stack([xy[:, 1], xy[:, 0]], 1)

    def colour_values(self, by: str = "class") -> np.ndarray:
        """Per-point values for the layer's ``face_color`` (class index or a score)."""
        if by == "class":
            labels = self.result.labels
            return labels.astype(float) if labels is not None else np.zeros(len(self.result.paths))
        return np.asarray(getattr(self.result.embedding, by), float)

    def ranked(self, n: int = 50) -> list[tuple[int, str, float]]:
        """(index, file name, score) of the ``n`` most unusual images by the current score."""
        vals = getattr(self.result.embedding, self.score)
        return [(int(i), self.result.paths[i].name, float(vals[i])) for i in self._ranking[:n]]

    def step(self, delta: int = 1) -> int:
        """Move along the ranking (next / previous unusual image); the point's index."""
        if not len(self._ranking):
            raise ValueError("nothing computed yet")
        self.position = int(np.clip(self.position + delta, 0, len(self._ranking) - 1))
        return int(self._ranking[self.position])

    def describe(self, index: int) -> str:
        r, e = self.result, self.result.embedding
        parts = [r.paths[index].name]
        if r.labels is not None:
            parts.append(f"label {r.classes[r.labels[index]]}, k-NN says "
                         f"{r.classes[e.predicted[index]]} (mislabel {e.mislabel[index]:.2f})")
        parts.append(f"k-th distance {e.knn_distance[index]:.3f}, LOF {e.lof[index]:.2f}")
        return "; ".join(parts)

    def image_path(self, index: int) -> Path:
        return self.result.paths[index]
