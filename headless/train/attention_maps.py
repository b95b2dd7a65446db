"""CLS attention maps computed once per dataset, cached on disk, and cleaned into crop densities.

The seed (000) computed a ViT forward pass inside ``Dataset.__getitem__`` for every item of every
epoch and measured data loading about 12x slower than plain ``RandomResizedCrop``. Here the ViT
runs once over the dataset, in batches (:func:`compute_attention_maps`), and each image's
mean-over-heads last-layer CLS attention is stored as a small float16 array (a few hundred bytes
to a few KB). Before training, ``store.pack(paths).densities(*crop.clean_params)`` loads every map
into one array and cleans it into a sampling density once (:func:`clean_attention_densities`);
the data loader then only indexes that array. (Reading the cache file and cleaning per item also
works, :meth:`AttentionMapStore.attention_map`, at a measurable cost per item.)

Batching images of different sizes: each image is resized so that its longer side is ``size``
and both sides are whole multiples of the patch size (the shorter side rounded to the nearest
multiple, so the aspect ratio changes by less than half a patch). The patch grid then tiles the
image exactly (no padding tokens), images of the same grid shape share a batch, and a dataset has
at most ``size // patch`` distinct shapes. Cell ``(i, j)`` of a stored ``(h, w)`` map covers rows
``[i H / h, (i + 1) H / h)`` and columns ``[j W / w, (j + 1) W / w)`` of the original image.

Cache files: ``<cache_dir>/attention/<key>.f16``, one per image, in a tiny raw format read with
one ``read()`` (an ``.npz`` costs ~10x more to open, which showed in the data-loading benchmark):
the 4 bytes ``DSAM``, then little-endian uint16 ``h, w``, uint32 ``H, W`` (the original image
size), then ``h * w`` float16 values row-major. The key hashes the absolute image path, its
modification time and byte size, the backbone (name, weights label and a fingerprint of its
parameters) and ``size``: editing an image, or changing weights, is a cache miss, never a stale
map.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from headless.progress import Progress, ProgressGen
from headless.store import atomic_write_bytes, project_root_for_folder

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


# -- cleaning -------------------------------------------------------------------------------------
def replace_max_with_mean(attn_map: np.ndarray) -> np.ndarray:
    """The map with its (first) maximum replaced by the mean of the *other* values.

    DINO's CLS attention has one outlier patch that takes far more mass than the object (seed 000
    observed every crop landing on the same point without this step). The replacement is the mean
    of the remaining values, so the outlier does not inflate its own substitute.
    """
    a = np.array(attn_map, dtype=np.float64, copy=True)
    if a.size < 2:
        return a
    flat = a.reshape(-1)
    k = int(np.argmax(flat))
    flat[k] = (flat.sum() - flat[k]) / (flat.size - 1)
    return a


@lru_cache(maxsize=64)
def _gaussian_matrix(n: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``(n, n)`` matrix of a 1D Gaussian filter with half-sample reflected borders.

    Same weights and borders as ``scipy.ndimage.gaussian_filter(mode="reflect")``; as a matrix
    product it costs microseconds on the small maps here (the data loader calls it per item).
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    g /= g.sum()
    m = np.zeros((n, n))
    for i in range(n):
        for t, wt in zip(offsets, g):
            j = i + int(t)
            while j < 0 or j >= n:  # reflect (d c b a | a b c d | d c b a) until inside
                j = -j - 1 if j < 0 else 2 * n - j - 1
            m[i, j] += wt
    m.setflags(write=False)
    return m


def gaussian_smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    """2D Gaussian smoothing (``sigma`` in cells), equal to scipy's with ``mode="reflect"``."""
    a = np.asarray(a, dtype=np.float64)
    rows = _gaussian_matrix(a.shape[0], float(sigma))
    cols = _gaussian_matrix(a.shape[1], float(sigma))
    return rows @ a @ cols.T


def softmax_temperature(x: np.ndarray, temperature: float) -> np.ndarray:
    """``exp(x / T) / sum(exp(x / T))`` over all elements, computed stably (max subtracted)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(x, dtype=np.float64) / float(temperature)
    z = np.exp(z - z.max())
    return z / z.sum()


def clean_attention_density(
    attn_map: np.ndarray,
    temperature: float,
    *,
    sigma: float = 1.0,
    minmax: bool = True,
) -> np.ndarray:
    """Seed 000's cleaning of a CLS attention map into a probability density over grid cells.

    Steps, in order: mean over heads (if a ``(heads, h, w)`` stack is given), the maximum replaced
    by the mean of the other values, Gaussian smoothing with standard deviation ``sigma`` grid
    cells (0 disables; borders reflect), optional min-max scaling to [0, 1] (makes ``temperature``
    mean the same thing for every image and backbone), then a softmax with ``temperature``.
    Returns float64 ``(h, w)`` summing to 1. Low temperature concentrates the mass on the peak;
    high temperature tends to the uniform density.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = np.array(attn_map, dtype=np.float64)  # a copy: edited in place below
    if a.ndim == 3:
        a = a.mean(axis=0)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"an attention map must be (h, w) or (heads, h, w); got shape {a.shape}")
    # fused steps (the data loader calls this per item; each numpy call costs microseconds)
    flat = a.reshape(-1)
    total = float(flat.sum())
    if not math.isfinite(total):
        raise ValueError("the attention map has non-finite values (NaN or inf)")
    if flat.size > 1:  # replace_max_with_mean
        k = int(flat.argmax())
        flat[k] = (total - flat[k]) / (flat.size - 1)
    if sigma and sigma > 0:
        a = gaussian_smooth(a, float(sigma))
    lo, hi = float(a.min()), float(a.max())
    if minmax:
        # softmax_T((a - lo) / (hi - lo)), with the max subtracted inside the exponent
        z = (a - hi) / (temperature * (hi - lo)) if hi > lo else np.zeros_like(a)
    else:
        z = (a - hi) / temperature
    e = np.exp(z)
    return e / e.sum()


def clean_attention_densities(
    maps: np.ndarray,
    temperature: float,
    *,
    sigma: float = 1.0,
    minmax: bool = True,
) -> np.ndarray:
    """:func:`clean_attention_density` for a stack ``(N, h, w)`` of maps at once (same result).

    Used to prepare a whole dataset's densities before training, so the loader does none of it.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = np.array(maps, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"expected a stack of maps (N, h, w), got shape {a.shape}")
    n, h, w = a.shape
    if n == 0:
        return a
    flat = a.reshape(n, -1)
    total = flat.sum(axis=1)
    bad = ~np.isfinite(total)
    if bad.any():
        raise ValueError(f"attention map {int(np.argmax(bad))} has non-finite values")
    if flat.shape[1] > 1:
        k = flat.argmax(axis=1)
        rows = np.arange(n)
        flat[rows, k] = (total - flat[rows, k]) / (flat.shape[1] - 1)
    if sigma and sigma > 0:
        a = _gaussian_matrix(h, float(sigma)) @ a @ _gaussian_matrix(w, float(sigma)).T
    lo = a.min(axis=(1, 2), keepdims=True)
    hi = a.max(axis=(1, 2), keepdims=True)
    if minmax:
        span = hi - lo
        z = np.where(span > 0, (a - hi) / (temperature * np.where(span > 0, span, 1.0)), 0.0)
    else:
        z = (a - hi) / temperature
    e = np.exp(z)
    return e / e.sum(axis=(1, 2), keepdims=True)


# -- the cache ------------------------------------------------------------------------------------
def grid_shape(height: int, width: int, size: int, patch_size: int) -> tuple[int, int]:
    """Resized ``(H, W)`` in pixels: longer side ``size`` and both sides multiples of the patch.

    ``size`` itself is rounded to the nearest multiple of the patch size (at least one patch).
    """
    p = int(patch_size)
    longer = max(p, int(round(size / p)) * p)
    s = longer / max(height, width)
    return (max(p, int(round(height * s / p)) * p), max(p, int(round(width * s / p)) * p))


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
        """The cached map wrapped as :class:`headless.train.crops.AttentionMap` for a v2 sample."""
        arr = self.get(image_path)
        if arr is None:
            return None
        from headless.train.crops import AttentionMap

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

    ``packed[i]`` is an :class:`~headless.train.crops.AttentionMap` (None where image ``i`` has
    none);
    ``packed.map(i)`` the array. :meth:`densities` cleans every map once, for one crop setting:
    its entries are :class:`headless.train.crops.AttentionDensity`, which the crop samples from
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
        from headless.train.crops import AttentionDensity, AttentionMap

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


# -- computing ------------------------------------------------------------------------------------
def _image_hw(path: Path) -> tuple[int, int]:
    """(H, W) from the file header when PIL can read it, else by decoding."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            if getattr(im, "n_frames", 1) == 1:
                return int(h), int(w)
    except Exception:
        pass
    from headless.images import read_image, to_rgb01

    a = to_rgb01(read_image(path))
    return int(a.shape[0]), int(a.shape[1])


def _load_resized(path: Path, hw: tuple[int, int], mean: Any, std: Any) -> Any:
    """One image as a normalised ``(3, h, w)`` float tensor at the grid-aligned size."""
    import torch
    import torch.nn.functional as F

    from headless.images import read_image, to_rgb01

    rgb = to_rgb01(read_image(path))
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=hw, mode="bilinear", antialias=True, align_corners=False)[0]
    m = torch.as_tensor(mean, dtype=t.dtype).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=t.dtype).view(3, 1, 1)
    return (t - m) / s


def _batches(
    groups: dict[tuple[int, int], list[int]], batch_size: int
) -> Iterator[tuple[tuple[int, int], list[int]]]:
    for shape in sorted(groups):
        idx = groups[shape]
        for i in range(0, len(idx), batch_size):
            yield shape, idx[i : i + batch_size]


def compute_attention_maps(
    backbone: Any,
    image_paths: Sequence[str | Path],
    size: int = 224,
    batch_size: int = 16,
    device: Any = None,
    *,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    extract: Callable[[Any, Any], Any] | None = None,
    num_threads: int = 2,
    weights: str | Path | None = "official",
) -> ProgressGen[AttentionMapStore]:
    """Run the ViT once over a dataset and cache every image's mean-over-heads CLS attention.

    A progress generator (drive it with :func:`headless.progress.run` or a ``thread_worker``)
    that returns the :class:`AttentionMapStore` for these maps. Images already cached with the
    same file, backbone and size are skipped (so an interrupted run resumes), unless
    ``overwrite``. ``extract`` defaults to :func:`headless.features.extract` and must return an
    object with ``attn`` of shape ``(B, heads, h, w)``; ``device`` defaults to the backbone's.
    ``backbone`` may be a :class:`headless.features.Backbone` or a backbone name, loaded with
    ``weights`` on ``device``. Images are decoded on ``num_threads`` threads while the model runs.
    """
    import torch

    from headless.images import ImageError

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise ValueError("no images given to compute attention maps for")
    absent = [p for p in paths if not p.is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise ImageError(f"{absent[0]}: no such image file{more}")
    if isinstance(backbone, str):
        from headless.features.backbones import load_backbone

        backbone = load_backbone(backbone, weights=weights, device=str(device or "cpu"))
    if extract is None:
        from headless.features.forward import extract as extract_features

        extract = extract_features
    if device is None:
        device = getattr(backbone, "device", "cpu")
    patch = int(getattr(backbone, "patch_size", None) or backbone.spec.patch_size)
    mean, std = backbone.spec.mean, backbone.spec.std
    store = AttentionMapStore(
        cache_dir if cache_dir is not None else default_cache_dir(paths),
        backbone_key(backbone),
        size,
    )
    todo = paths if overwrite else store.missing(paths)
    total = len(todo)
    yield Progress(0, total, f"{len(paths) - total} of {len(paths)} maps already cached")
    if not todo:
        return store

    groups: dict[tuple[int, int], list[int]] = {}
    hws: list[tuple[int, int]] = []
    for i, p in enumerate(todo):
        hw = _image_hw(p)
        hws.append(hw)
        groups.setdefault(grid_shape(hw[0], hw[1], size, patch), []).append(i)

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, int(num_threads))) as pool:

        def submit(item: tuple[tuple[int, int], list[int]]) -> list[Any]:
            shape, idx = item
            return [pool.submit(_load_resized, todo[i], shape, mean, std) for i in idx]

        batches = list(_batches(groups, batch_size))
        pending = submit(batches[0])
        for b, (_, idx) in enumerate(batches):
            tensors = [f.result() for f in pending]
            if b + 1 < len(batches):  # decode the next batch while the model runs
                pending = submit(batches[b + 1])
            batch = torch.stack(tensors).to(device)
            with torch.inference_mode():
                attn = extract(backbone, batch).attn
            maps = torch.as_tensor(attn).float().mean(dim=1).cpu().numpy()
            for i, m in zip(idx, maps):
                store.put(todo[i], m, hws[i])
            done += len(idx)
            yield Progress(done, total, f"attention maps {done}/{total}")
    return store
