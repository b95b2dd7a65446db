"""The image list of a batch run, its shards, and the key that says an image is done.

Shards are stable: the list is sorted by absolute path (not by directory-listing order, which
differs between file systems), and shard ``i`` of ``n`` takes every ``n``-th image from the
``i``-th, so shards stay balanced when image sizes vary along the listing. An image's key joins
its path, modification time and size with a digest of the settings that change its result:
editing an image or changing a setting makes it pending again; nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def sorted_images(paths: Iterable[str | Path]) -> list[Path]:
    """Absolute paths, without repeats, sorted by their string form (the run's image order)."""
    unique = {str(Path(p).expanduser().absolute()): None for p in paths}
    return [Path(p) for p in sorted(unique)]


def shard_indices(n_images: int, n_shards: int, index: int) -> range:
    """Positions of shard ``index`` of ``n_shards`` in a sorted list of ``n_images``."""
    if n_shards < 1:
        raise ValueError(f"the number of shards must be at least 1, got {n_shards}")
    if not 0 <= index < n_shards:
        raise ValueError(f"shard {index} does not exist: the run has {n_shards} shard(s)")
    return range(index, n_images, n_shards)


def shard_of(images: Sequence[Path], n_shards: int, index: int) -> list[Path]:
    """The images of one shard (every ``n_shards``-th of the sorted list, from ``index``)."""
    return [images[i] for i in shard_indices(len(images), n_shards, index)]


def settings_digest(task: str, settings: dict[str, Any]) -> str:
    """A short digest of what changes an image's result (canonical JSON, so key order and
    whitespace do not matter)."""
    text = json.dumps({"task": task, **settings}, sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def image_key(path: str | Path, digest: str, stat: os.stat_result | None = None) -> str:
    """``path|mtime_ns|size|digest``: equal only for the same file content state and settings.

    A missing file gets ``-1`` for both, so it is pending (and fails with its own message)."""
    try:
        st = stat or os.stat(path)
        mtime, size = st.st_mtime_ns, st.st_size
    except OSError:
        mtime, size = -1, -1
    return f"{Path(path)}|{mtime}|{size}|{digest}"
