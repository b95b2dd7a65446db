"""The probe classes: :class:`LinearProbe` and :class:`ForestProbe` behind :class:`Probe`.

Prediction runs in blocks of :data:`PREDICT_CHUNK` pixels (bounded memory on big images);
:meth:`Probe.save` writes the ``.npz`` file that :func:`headless.segment.probe.files.load_probe`
reads back. Training lives in :mod:`headless.segment.probe.training`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from headless.segment.probe.meta import (
    FORMAT,
    FORMAT_VERSION,
    LEGACY_OPTIONS,
    ProbeError,
    ProbeMeta,
    ProbeMismatchError,
)
from headless.segment.probe.trees import TreeArrays
from headless.store import atomic_save_npz

PREDICT_CHUNK = 1 << 17  # pixels per prediction block: bounds the memory of big images


class Probe:
    """Common interface: ``predict_proba((N, D)) -> (N, C)`` in the order of ``class_values``."""

    kind: str = ""

    def __init__(self, meta: ProbeMeta) -> None:
        self.meta = meta

    # -- prediction ---------------------------------------------------------------------
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` float32 of the feature rows ``x`` (N, D)."""
        x = self._check_rows(x)
        out = np.empty((x.shape[0], self.meta.n_classes), np.float32)
        for s in range(0, x.shape[0], PREDICT_CHUNK):
            out[s:s + PREDICT_CHUNK] = self._proba_block(x[s:s + PREDICT_CHUNK])
        return out

    def predict_image(self, features: np.ndarray) -> np.ndarray:
        """Probabilities ``(H, W, C)`` of a feature map ``(H, W, D)``."""
        h, w, d = self._check_map(features)
        return self.predict_proba(features.reshape(h * w, d)).reshape(h, w, -1)

    def labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        """Argmax over classes, written as the class *values* (e.g. 85/170/255), not 0..C-1."""
        return class_values_array(self.meta.class_values)[np.argmax(proba, axis=-1)]

    def _proba_block(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- checks -------------------------------------------------------------------------
    def check_compatible(
        self, feature_mode: str | None = None, backbone: str | None = None,
        feature_dim: int | None = None, feature_options: dict[str, Any] | None = None,
    ) -> None:
        """Raise :class:`ProbeMismatchError` naming everything that differs from this probe."""
        m = self.meta
        problems = []
        if feature_mode is not None and feature_mode != m.feature_mode:
            problems.append(f"feature mode: probe '{m.feature_mode}', features '{feature_mode}'")
        if feature_mode is not None and feature_mode != "classical" and backbone != m.backbone:
            problems.append(f"backbone: probe '{m.backbone}', features '{backbone}'")
        if feature_dim is not None and int(feature_dim) != m.feature_dim:
            problems.append(f"feature dimension: probe {m.feature_dim}, features {feature_dim}"
                            + _dim_hint(m.feature_mode))
        if feature_options is not None and not problems:  # options only matter for one mode
            for key in sorted(set(m.feature_options) | set(feature_options)):
                a, b = m.feature_options.get(key), feature_options.get(key)
                if key not in m.feature_options and key in feature_options:
                    a = LEGACY_OPTIONS.get(key)  # saved before the option existed
                if _jsonable(a) != _jsonable(b):
                    problems.append(f"feature option '{key}': probe {a!r}, features {b!r}")
        if problems:
            raise ProbeMismatchError(
                "this probe does not match the features: " + "; ".join(problems)
                + ". Retrain from scribbles, or compute the features the probe was trained on."
            )

    def _check_rows(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ProbeError(f"expected feature rows (N, D), got shape {x.shape}")
        if x.shape[1] != self.meta.feature_dim:
            raise ProbeMismatchError(
                f"feature dimension: probe {self.meta.feature_dim}, features {x.shape[1]} "
                f"(probe trained on '{self.meta.feature_mode}' features"
                + (f" of {self.meta.backbone}" if self.meta.backbone else "") + ")"
                + _dim_hint(self.meta.feature_mode)
            )
        return x

    def _check_map(self, features: np.ndarray) -> tuple[int, int, int]:
        if features.ndim != 3:
            raise ProbeError(f"expected a feature map (H, W, D), got shape {features.shape}")
        h, w, d = features.shape
        return h, w, d

    # -- saving -------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | Path) -> Path:
        """Write the probe as ``.npz`` (arrays + JSON metadata), atomically; no pickle."""
        path = Path(path)
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION, "classifier": self.kind,
            "meta": asdict(self.meta), "params": self._params(),
        }
        arrays = self._arrays()
        arrays["metadata_json"] = np.array(json.dumps(meta))
        return atomic_save_npz(path, **arrays)


class LinearProbe(Probe):
    """Softmax regression ``p = softmax(W z + b)`` with ``z = (x - mean) / std``."""

    kind = "linear"

    def __init__(
        self, meta: ProbeMeta, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray,
        std: np.ndarray, params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(meta)
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32).reshape(-1)
        self.mean = np.asarray(mean, np.float32).reshape(-1)
        self.std = np.asarray(std, np.float32).reshape(-1)
        c, d = meta.n_classes, meta.feature_dim
        if self.weight.shape != (c, d) or self.bias.shape != (c,):
            raise ProbeError(
                f"linear probe arrays do not match its metadata: weight {self.weight.shape}, "
                f"bias {self.bias.shape}, expected ({c}, {d}) and ({c},)"
            )
        if self.mean.shape != (d,) or self.std.shape != (d,) or np.any(self.std <= 0):
            raise ProbeError("the scaler must hold D means and D positive standard deviations")
        self.params = dict(params or {})
        self._estimator: Any = None  # the sklearn model, kept for warm-started retraining

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W', b')`` acting on raw features: ``W' x + b' == W (x - mean) / std + b``."""
        w = (self.weight / self.std[None, :]).astype(np.float32)
        b = (self.bias - w @ self.mean).astype(np.float32)
        return w, b

    def logits(self, x: np.ndarray) -> np.ndarray:
        w, b = self.folded()
        return np.asarray(x, np.float32) @ w.T + b

    def _proba_block(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x), axis=-1)

    def predict_image(self, features: np.ndarray) -> np.ndarray:
        # A matrix product of any memory layout: no (N, D) copy of a channels-first map.
        h, w, d = self._check_map(features)
        if d != self.meta.feature_dim:
            self._check_rows(features[:1, 0])
        wt, b = self.folded()
        out = np.empty((h, w, self.meta.n_classes), np.float32)
        rows = max(1, PREDICT_CHUNK // max(w, 1))
        for s in range(0, h, rows):
            block = np.asarray(features[s:s + rows], np.float32)
            out[s:s + rows] = softmax(np.matmul(block, wt.T) + b, axis=-1)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "scaler_mean": self.mean,
                "scaler_std": self.std}

    def _params(self) -> dict[str, Any]:
        return dict(self.params)


class ForestProbe(Probe):
    """A random forest stored as node arrays; predictions average the trees' leaf distributions.

    The scaler is the identity: trees are invariant to per-feature affine scaling.
    """

    kind = "rf"

    def __init__(self, meta: ProbeMeta, trees: list[TreeArrays],
                 params: dict[str, Any] | None = None, n_jobs: int | None = None) -> None:
        super().__init__(meta)
        if not trees:
            raise ProbeError("a random forest needs at least one tree")
        for t in trees:
            t.validate(meta.feature_dim, meta.n_classes)
        self.trees = trees
        self.params = dict(params or {})
        self.n_jobs = n_jobs
        self._built = [t.build(meta.feature_dim, meta.n_classes) for t in trees]
        # (C, n_nodes) per tree: 1D ``take`` per class is ~5x faster than a 2D fancy gather
        self._leaf_proba = [np.ascontiguousarray(t.leaf_proba().T) for t in trees]

    @property
    def mean(self) -> np.ndarray:
        return np.zeros(self.meta.feature_dim, np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.ones(self.meta.feature_dim, np.float32)

    def _proba_block(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        n_jobs = n_threads(self.n_jobs, len(self._built))
        if n_jobs > 1:
            parts = np.array_split(np.arange(len(self._built)), n_jobs)
            with ThreadPoolExecutor(n_jobs) as pool:
                sums = list(pool.map(lambda idx: self._sum_trees(x, idx), parts))
            total = np.sum(sums, axis=0)
        else:
            total = self._sum_trees(x, range(len(self._built)))
        total /= len(self._built)
        return np.ascontiguousarray(total.T)

    def _sum_trees(self, x: np.ndarray, idx: Sequence[int]) -> np.ndarray:
        acc = np.zeros((self.meta.n_classes, x.shape[0]), np.float32)
        for i in idx:
            leaves = self._built[i].apply(x)  # sklearn releases the GIL here
            table = self._leaf_proba[i]
            for c in range(table.shape[0]):
                acc[c] += table[c].take(leaves)
        return acc

    def _arrays(self) -> dict[str, np.ndarray]:
        counts = np.array([t.n_nodes for t in self.trees], np.int64)
        cat = {name: np.concatenate([getattr(t, name) for t in self.trees])
               for name in TreeArrays.ARRAYS}
        return {"tree_node_counts": counts, "tree_max_depth":
                np.array([t.max_depth for t in self.trees], np.int64),
                **{f"tree_{k}": v for k, v in cat.items()}}

    def _params(self) -> dict[str, Any]:
        return dict(self.params)


# --------------------------------------------------------------------------- helpers


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def class_values_array(values: Sequence[int]) -> np.ndarray:
    """Class values as the smallest unsigned (or signed) integer dtype that holds them."""
    v = np.asarray(list(values), np.int64)
    for dt in (np.uint8, np.uint16, np.uint32, np.int32):
        info = np.iinfo(dt)
        if v.size == 0 or (v.min() >= info.min and v.max() <= info.max):
            return v.astype(dt)
    return v


def n_threads(n_jobs: int | None, n_items: int) -> int:
    """Threads for ``n_items`` jobs: ``n_jobs``, or by default the CPU cores - 1, at most 4."""
    import os

    if n_jobs is None:  # leave one core to the GUI / other work; 2 cores -> serial
        n_jobs = min(4, (os.cpu_count() or 1) - 1)
    return max(1, min(int(n_jobs), n_items))


def _dim_hint(mode: str) -> str:
    if mode in ("classical", "hybrid"):
        return (" (classical features of grey and colour images differ in number: train on "
                "images of the same kind)")
    return ""


def _jsonable(v: Any) -> Any:
    """Normalise option values for comparison (tuples and lists compare equal)."""
    return json.loads(json.dumps(v, default=str))

