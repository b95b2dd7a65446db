"""Reading a probe ``.npz`` file safely: ``allow_pickle=False``, every array and field checked.

The file is what :meth:`headless.segment.probe.models.Probe.save` writes: plain numeric arrays
plus a ``metadata_json`` string (format tag and version, classifier, :class:`ProbeMeta`, params).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from headless.segment.probe.meta import FORMAT, FORMAT_VERSION, ProbeError, ProbeMeta
from headless.segment.probe.models import ForestProbe, LinearProbe, Probe
from headless.segment.probe.schema import (
    MAX_JSON_BYTES,
    MAX_TREE_NODES,
    expected_bytes,
    validate_metadata,
)
from headless.segment.probe.trees import TreeArrays


def load_probe(path: str | Path) -> Probe:
    """Read a probe written by :meth:`Probe.save`; checks its structure, never unpickles.

    Order matters: the metadata is validated first (:mod:`.schema`), then only the arrays this
    classifier needs are read, each after its size in the zip directory was checked against the
    metadata, then every number is checked finite. Extra arrays in the file are never read.
    """
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"{path}: no such probe file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return _read(path, data)
    except ProbeError as exc:
        if str(path) in str(exc):
            raise
        raise ProbeError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ProbeError(f"{path}: not a probe file ({type(exc).__name__}: {exc})"
                         ) from exc


def _member_size(data: Any, name: str) -> int:
    return int(data.zip.getinfo(f"{name}.npy").file_size)


def _array(data: Any, name: str, limit: int) -> np.ndarray:
    if name not in data.files:
        raise ProbeError(f"damaged probe file: array '{name}' is missing")
    size = _member_size(data, name)
    if size > limit:
        raise ProbeError(f"array '{name}' holds {size} bytes where the metadata allows at most "
                         f"{limit}: refused (tampered or damaged file)")
    a = data[name]
    if a.dtype.kind not in "biuf":
        raise ProbeError(f"array '{name}' has type {a.dtype}, expected numbers")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ProbeError(f"array '{name}' holds NaN or infinite values")
    return a


def _read(path: Path, data: Any) -> Probe:
    if "metadata_json" not in data.files:
        raise ProbeError(f"{path}: not a napari-dinoseg probe (no metadata)")
    if _member_size(data, "metadata_json") > MAX_JSON_BYTES:
        raise ProbeError("probe metadata larger than 1 MB: refused")
    try:
        raw = json.loads(str(data["metadata_json"]))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProbeError(f"probe metadata is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ProbeError(f"{path}: not a napari-dinoseg probe (format {got!r})")
    if isinstance(raw.get("version"), int) and raw["version"] > FORMAT_VERSION:
        raise ProbeError(f"{path}: probe format version {raw['version']} is newer than "
                         f"this program understands ({FORMAT_VERSION}); update napari-dinoseg")
    meta_all = validate_metadata(raw)
    meta = ProbeMeta(**meta_all["meta"])
    kind, params = meta_all["classifier"], meta_all["params"]
    if kind == "linear":
        limits = expected_bytes(kind, meta_all["meta"])
        a = {name: _array(data, name, limit) for name, limit in limits.items()}
        if np.any(a["scaler_std"] <= 0):
            raise ProbeError("array 'scaler_std' must be positive")
        return LinearProbe(meta, a["weight"], a["bias"], a["scaler_mean"], a["scaler_std"],
                           params=params)
    counts = _array(data, "tree_node_counts", 8 * 10_000 + 1024).astype(np.int64)
    depths = _array(data, "tree_max_depth", 8 * 10_000 + 1024).astype(np.int64)
    if counts.shape != depths.shape or np.any(counts < 1) or np.any(depths < 0):
        raise ProbeError("damaged probe file: tree counts and depths do not match")
    total = int(counts.sum())
    if total > MAX_TREE_NODES:
        raise ProbeError(f"the forest declares {total} nodes (at most {MAX_TREE_NODES}): refused")
    arrays = {name: _array(data, name, limit)
              for name, limit in expected_bytes(kind, meta_all["meta"], total).items()}
    for name in TreeArrays.ARRAYS:
        if arrays[f"tree_{name}"].shape[0] != total:
            raise ProbeError(f"{path}: tree array '{name}' has the wrong length")
    ends = np.cumsum(counts)
    trees = []
    for i, (e, n) in enumerate(zip(ends, counts)):
        sl = slice(int(e - n), int(e))
        trees.append(TreeArrays(
            **{name: np.asarray(arrays[f"tree_{name}"][sl]) for name in TreeArrays.ARRAYS},
            max_depth=int(depths[i]),
        ))
    return ForestProbe(meta, trees, params=params)
