"""Reading a probe ``.npz`` file safely: ``allow_pickle=False``, every array and field checked.

The file is what :meth:`headless.segment.probe.models.Probe.save` writes: plain numeric arrays
plus a ``metadata_json`` string (format tag and version, classifier, :class:`ProbeMeta`, params).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from headless.segment.probe.meta import FORMAT, FORMAT_VERSION, ProbeError, ProbeMeta
from headless.segment.probe.models import ForestProbe, LinearProbe, Probe
from headless.segment.probe.trees import TreeArrays


def load_probe(path: str | Path) -> Probe:
    """Read a probe written by :meth:`Probe.save`; checks its structure, never unpickles."""
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"{path}: no such probe file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise ProbeError(f"{path}: not a probe file ({type(exc).__name__}: {exc})") from exc
    if "metadata_json" not in arrays:
        raise ProbeError(f"{path}: not a napari-dinoseg probe (no metadata)")
    try:
        meta_all = json.loads(str(arrays.pop("metadata_json")))
        if meta_all.get("format") != FORMAT:
            raise ProbeError(f"{path}: not a napari-dinoseg probe (format "
                             f"{meta_all.get('format')!r})")
        if int(meta_all.get("version", 0)) > FORMAT_VERSION:
            raise ProbeError(f"{path}: probe format version {meta_all['version']} is newer than "
                             f"this program understands ({FORMAT_VERSION}); update napari-dinoseg")
        meta = ProbeMeta(**meta_all["meta"])
        kind = meta_all["classifier"]
        params = meta_all.get("params", {})
        if kind == "linear":
            return LinearProbe(meta, arrays["weight"], arrays["bias"], arrays["scaler_mean"],
                               arrays["scaler_std"], params=params)
        if kind == "rf":
            counts = arrays["tree_node_counts"].astype(np.int64)
            depths = arrays["tree_max_depth"].astype(np.int64)
            ends = np.cumsum(counts)
            total = int(ends[-1]) if ends.size else 0
            for name in TreeArrays.ARRAYS:
                if arrays[f"tree_{name}"].shape[0] != total:
                    raise ProbeError(f"{path}: tree array '{name}' has the wrong length")
            trees = []
            for i, (e, n) in enumerate(zip(ends, counts)):
                sl = slice(int(e - n), int(e))
                trees.append(TreeArrays(
                    **{name: np.asarray(arrays[f"tree_{name}"][sl]) for name in TreeArrays.ARRAYS},
                    max_depth=int(depths[i]),
                ))
            return ForestProbe(meta, trees, params=params)
        raise ProbeError(f"{path}: unknown classifier {kind!r}")
    except ProbeError as exc:
        if str(path) in str(exc):
            raise
        raise ProbeError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ProbeError(f"{path}: damaged probe file ({type(exc).__name__}: {exc})") from exc
