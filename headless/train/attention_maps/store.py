"""The on-disk cache of attention maps, and a dataset's maps packed into one array.

Cache files: ``<cache_dir>/attention/<key>.f16``, one per image, in a tiny raw format read with
one ``read()`` (an ``.npz`` costs ~10x more to open, which showed in the data-loading benchmark):
the 4 bytes ``DSAM``, then little-endian uint16 ``h, w``, uint32 ``H, W`` (the original image
size), then ``h * w`` float16 values row-major. The key hashes the absolute image path, its
modification time and byte size, the backbone (name, weights label and a fingerprint of its
parameters) and ``size``: editing an image, or changing weights, is a cache miss, never a stale
map.

Before training, ``store.pack(paths).densities(*crop.clean_params)`` loads every map into one
array and cleans it into a sampling density once
(:func:`~headless.train.attention_maps.cleaning.clean_attention_densities`); the data loader then
only indexes that array. (Reading the cache file and cleaning per item also works,
:meth:`AttentionMapStore.attention_map`, at a measurable cost per item.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headless.store import atomic_write_bytes, project_root_for_folder
from headless.train.attention_maps.cleaning import (
    clean_attention_densities,
    clean_attention_density,
)

CACHE_KIND = "attention"
_MAGIC = b"DSAM"
_HEADER = np.dtype([("h", "<u2"), ("w", "<u2"), ("H", "<u4"), ("W", "<u4")])


def encode_map(attn_map: np.ndarray, image_hw: tuple[int, int]) -> bytes:
    """A ``(h, w)`` map in the cache's raw format (see the module docstring)."""
    a = np.asarray(attn_map, dtype=np.float32)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"expected a (h, w) map, got shape {a.shape}")
    head = np.array([(a.shape[0], a.shape[1], int(image_hw[0]), int(image_hw[1]))], _HEADER)
    return _MAGIC + head.tobytes() + a.astype("<f2").tobytes()


def decode_map(data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
    """``(map float16 (h, w), (H, W))`` from :func:`encode_map` bytes; ValueError if damaged."""
    n = len(_MAGIC) + _HEADER.itemsize
    if len(data) < n or data[: len(_MAGIC)] != _MAGIC:
        raise ValueError("not an attention-map cache file")
    head = np.frombuffer(data, _HEADER, count=1, offset=len(_MAGIC))[0]
    h, w = int(head["h"]), int(head["w"])
    if len(data) != n + 2 * h * w:
        raise ValueError("truncated attention-map cache file")
    arr = np.frombuffer(data, "<f2", count=h * w, offset=n).reshape(h, w)
    return arr, (int(head["H"]), int(head["W"]))


def backbone_key(backbone: Any) -> str:
    """Identity of a backbone's weights for cache keys: name, weights label, parameter hash.

    The hash reads the first two and the last two parameter tensors in full (patch embedding,
    position embedding, final norm: they differ between any two trainings or random draws) so
    two randomly initialised test models never share cache entries.
    """
    spec = getattr(backbone, "spec", None)
    name = getattr(spec, "name", None) or type(backbone).__name__
    label = getattr(backbone, "weights_label", "")
    h = hashlib.blake2b(digest_size=8)
    model = getattr(backbone, "model", None)
    if model is not None and hasattr(model, "named_parameters"):
        params = list(model.named_parameters())
        for pname, t in params[:2] + params[-2:]:
            h.update(pname.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return f"{name}|{label}|{h.hexdigest()}"


def default_cache_dir(image_paths: Sequence[str | Path]) -> Path:
    """The cache of the project of the deepest folder holding all images (one for an ImageFolder):
    ``<folder>/.dinoseg/cache``, or the user-level project when that folder is read-only."""
    parents = [str(Path(p).resolve().parent) for p in image_paths]
    if not parents:
        raise ValueError("no images given")
    return project_root_for_folder(os.path.commonpath(parents)) / "cache"


class AttentionMapStore:
    """Read-only view of cached attention maps for one (backbone, size); cheap per-item lookups.

    Holds only a folder and two strings, so it pickles into DataLoader workers. ``get`` is one
    ``stat`` and one small file read; it never runs the ViT. Set ``memory_cache=True`` to keep
    maps in a per-process dict after the first read (about 0.5-2 KB per image and worker).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        backbone_key: str,
        size: int,
        *,
        memory_cache: bool = False,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.backbone_key = str(backbone_key)
        self.size = int(size)
        self.memory_cache = bool(memory_cache)
        self._memo: dict[str, np.ndarray] = {}
        #: images a computation skipped, path -> why (unreadable, odd shape): reported, not fatal
        self.failures: dict[str, str] = {}

    @property
    def folder(self) -> Path:
        return self.cache_dir / CACHE_KIND

    def key(self, image_path: str | Path) -> str:
        """Cache key of an image: absolute path, mtime, byte size, backbone and size."""
        p = os.path.abspath(image_path)  # no symlink resolution: one stat per lookup
        st = os.stat(p)
        h = hashlib.blake2b(digest_size=16)
        for part in (p, st.st_mtime_ns, st.st_size, self.backbone_key, self.size):
            h.update(repr(part).encode())
            h.update(b"\0")
        return h.hexdigest()

    def path_for(self, image_path: str | Path) -> Path:
        return self.folder / f"{self.key(image_path)}.f16"

    def has(self, image_path: str | Path) -> bool:
        """True when a readable map is cached for the image as it is now."""
        return self.get(image_path) is not None

    def missing(self, image_paths: Sequence[str | Path]) -> list[Path]:
        """The images whose maps are not cached (or whose file changed since)."""
        return [Path(p) for p in image_paths if not self.has(p)]

    def get(self, image_path: str | Path) -> np.ndarray | None:
        """The cached mean-over-heads map (float16 ``(h, w)``), or None when not cached."""
        try:
            k = self.key(image_path)
        except FileNotFoundError:
            return None
        if self.memory_cache and k in self._memo:
            return self._memo[k]
        try:
            with open(self.folder / f"{k}.f16", "rb") as fh:
                arr = decode_map(fh.read())[0]
        except (FileNotFoundError, ValueError):  # a damaged entry is a miss (recomputed)
            return None
        if self.memory_cache:
            self._memo[k] = arr
        return arr

    def require(self, image_path: str | Path) -> np.ndarray:
        """Like :meth:`get` but a missing map is an error that says how to fix it."""
        arr = self.get(image_path)
        if arr is None:
            raise KeyError(
                f"no cached attention map for {image_path} (backbone "
                f"{self.backbone_key.split('|')[0]}, size {self.size}) in {self.folder}: "
                "run compute_attention_maps over the dataset "
                "first (the image may also have changed since)"
            )
        return arr

    def attention_map(self, image_path: str | Path) -> Any | None:
        """The cached map wrapped as an
        :class:`~headless.train.attention_maps.tensors.AttentionMap` for a v2 sample."""
        arr = self.get(image_path)
        if arr is None:
            return None
        from headless.train.attention_maps.tensors import AttentionMap

        return AttentionMap(arr)

    def density(
        self,
        image_path: str | Path,
        temperature: float,
        *,
        sigma: float = 1.0,
        minmax: bool = True,
    ) -> np.ndarray | None:
        """The cleaned sampling density of an image (see :func:`clean_attention_density`)."""
        arr = self.get(image_path)
        if arr is None:
            return None
        return clean_attention_density(arr, temperature, sigma=sigma, minmax=minmax)

    def put(self, image_path: str | Path, attn_map: np.ndarray, image_hw: tuple[int, int]) -> Path:
        """Store one mean-over-heads map (float16, written atomically)."""
        return atomic_write_bytes(self.path_for(image_path), encode_map(attn_map, image_hw))

    def pack(
        self, image_paths: Sequence[str | Path], *, strict: bool = True
    ) -> PackedAttentionMaps:
        """All maps of a dataset in one array, looked up by dataset index (for the loader).

        ``strict``: a missing map is an error naming the image (run
        :func:`compute_attention_maps` first); otherwise that index has no map and the crop
        falls back to RandomResizedCrop.
        """
        maps: list[np.ndarray | None] = []
        for p in image_paths:
            m = self.get(p)
            if m is None and strict:
                self.require(p)
            maps.append(m)
        return PackedAttentionMaps(maps)

    def __repr__(self) -> str:
        return f"AttentionMapStore({str(self.cache_dir)!r}, {self.backbone_key!r}, {self.size})"


class PackedAttentionMaps:
    """A dataset's maps in one buffer, indexed like the dataset: no file or ``stat`` per item,
    and a few numpy arrays that forked DataLoader workers share copy-on-write (a dict of small
    arrays would be copied page by page as reference counts change).

    ``packed[i]`` is an :class:`~headless.train.attention_maps.tensors.AttentionMap` (None where
    image ``i`` has none); ``packed.map(i)`` the array. :meth:`densities` cleans every map once,
    for one crop setting: its entries are
    :class:`~headless.train.attention_maps.tensors.AttentionDensity`, which the crop samples from
    directly, so the loader does no cleaning at all.
    """

    def __init__(
        self,
        maps: Sequence[np.ndarray | None],
        *,
        dtype: Any = np.float16,
        clean_params: tuple[float, float, bool] | None = None,
    ) -> None:
        shapes = np.zeros((len(maps), 2), np.int32)
        sizes = np.zeros(len(maps), np.int64)
        for i, m in enumerate(maps):
            if m is not None:
                shapes[i] = m.shape
                sizes[i] = m.size
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.shapes = shapes
        self.buffer = np.empty(int(self.offsets[-1]), dtype)
        for i, m in enumerate(maps):
            if m is not None:
                self.buffer[self.offsets[i] : self.offsets[i + 1]] = np.asarray(m).reshape(-1)
        self.clean_params = clean_params  # (temperature, sigma, minmax) for densities

    def __len__(self) -> int:
        return len(self.shapes)

    def map(self, index: int) -> np.ndarray | None:
        h, w = (int(v) for v in self.shapes[index])
        if h == 0:
            return None
        return self.buffer[self.offsets[index] : self.offsets[index + 1]].reshape(h, w)

    def __getitem__(self, index: int) -> Any | None:
        m = self.map(index)
        if m is None:
            return None
        from headless.train.attention_maps.tensors import AttentionDensity, AttentionMap

        if self.clean_params is None:
            return AttentionMap(m)
        return AttentionDensity(m, clean_params=self.clean_params)

    def densities(
        self, temperature: float, sigma: float = 1.0, minmax: bool = True
    ) -> PackedAttentionMaps:
        """Every map cleaned once (float32 densities, batched by grid shape)."""
        if self.clean_params is not None:
            raise ValueError("these are densities already; clean the raw maps")
        out: list[np.ndarray | None] = [None] * len(self)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, (h, w) in enumerate(self.shapes.tolist()):
            if h:
                by_shape.setdefault((h, w), []).append(i)
        for idx in by_shape.values():
            for start in range(0, len(idx), 4096):  # bounded memory for huge datasets
                chunk = idx[start : start + 4096]
                dens = clean_attention_densities(
                    np.stack([self.map(i) for i in chunk]), temperature, sigma=sigma, minmax=minmax
                )
                for i, d in zip(chunk, dens):
                    out[i] = d
        params = (float(temperature), float(sigma), bool(minmax))
        return PackedAttentionMaps(out, dtype=np.float32, clean_params=params)

