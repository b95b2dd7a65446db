"""A decision tree as plain arrays: what a probe file stores instead of a pickled forest.

:class:`TreeArrays` converts from a fitted sklearn tree, validates arrays read from a file
(children inside the tree, features in range, finite thresholds) and rebuilds a working
``sklearn.tree._tree.Tree`` from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from headless.segment.probe.meta import ProbeError


@dataclass
class TreeArrays:
    """One decision tree as plain arrays (sklearn's ``tree_`` layout, leaves have child -1)."""

    left: np.ndarray  # (n,) int64
    right: np.ndarray  # (n,) int64
    feature: np.ndarray  # (n,) int64, -2 at leaves
    threshold: np.ndarray  # (n,) float64: go left when x[feature] <= threshold
    value: np.ndarray  # (n, C) float64 class distribution (fractions) at each node
    n_samples: np.ndarray  # (n,) int64
    weighted_n_samples: np.ndarray  # (n,) float64
    impurity: np.ndarray  # (n,) float64
    max_depth: int = 0

    ARRAYS = ("left", "right", "feature", "threshold", "value", "n_samples",
              "weighted_n_samples", "impurity")

    @property
    def n_nodes(self) -> int:
        return int(self.left.shape[0])

    @classmethod
    def from_sklearn(cls, tree: Any) -> TreeArrays:
        t = tree.tree_
        value = np.asarray(t.value, np.float64)[:, 0, :]
        return cls(
            left=np.asarray(t.children_left, np.int64),
            right=np.asarray(t.children_right, np.int64),
            feature=np.asarray(t.feature, np.int64), threshold=np.asarray(t.threshold, np.float64),
            value=value, n_samples=np.asarray(t.n_node_samples, np.int64),
            weighted_n_samples=np.asarray(t.weighted_n_node_samples, np.float64),
            impurity=np.asarray(t.impurity, np.float64), max_depth=int(t.max_depth),
        )

    def validate(self, n_features: int, n_classes: int) -> None:
        n = self.n_nodes
        if n < 1:
            raise ProbeError("a tree has no nodes")
        for name in self.ARRAYS:
            a = getattr(self, name)
            if a.shape[0] != n:
                raise ProbeError(f"tree array '{name}' has {a.shape[0]} rows, expected {n}")
        if self.value.ndim != 2 or self.value.shape[1] != n_classes:
            raise ProbeError(f"tree values have shape {self.value.shape}, expected ({n}, "
                             f"{n_classes})")
        inner = self.left >= 0
        if np.any(inner != (self.right >= 0)):
            raise ProbeError("a tree node has exactly one child")
        kids = np.concatenate([self.left[inner], self.right[inner]])
        if kids.size and (kids.min() < 1 or kids.max() >= n or len(np.unique(kids)) != kids.size):
            raise ProbeError("tree children point outside the tree or share nodes")
        if np.any(self.feature[inner] < 0) or np.any(self.feature[inner] >= n_features):
            raise ProbeError(f"a tree splits on a feature outside 0..{n_features - 1}")
        if not np.all(np.isfinite(self.threshold[inner])):
            raise ProbeError("a tree has a non-finite threshold")

    def build(self, n_features: int, n_classes: int) -> Any:
        """A working ``sklearn.tree._tree.Tree`` from these arrays (its documented state)."""
        from sklearn.tree._tree import NODE_DTYPE, Tree

        nodes = np.zeros(self.n_nodes, dtype=NODE_DTYPE)
        nodes["left_child"] = self.left
        nodes["right_child"] = self.right
        nodes["feature"] = self.feature
        nodes["threshold"] = self.threshold
        nodes["impurity"] = self.impurity
        nodes["n_node_samples"] = self.n_samples
        nodes["weighted_n_node_samples"] = self.weighted_n_samples
        tree = Tree(int(n_features), np.array([n_classes], dtype=np.intp), 1)
        tree.__setstate__({
            "max_depth": int(self.max_depth), "node_count": self.n_nodes, "nodes": nodes,
            "values": np.ascontiguousarray(self.value[:, None, :], dtype=np.float64),
        })
        return tree

    def leaf_proba(self) -> np.ndarray:
        v = np.asarray(self.value, np.float32)
        s = v.sum(axis=1, keepdims=True)
        return np.divide(v, s, out=np.full_like(v, 1.0 / v.shape[1]), where=s > 0)

