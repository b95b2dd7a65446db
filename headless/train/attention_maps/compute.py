"""CLS attention maps computed once per dataset, in batches, into the cache.

The seed (000) computed a ViT forward pass inside ``Dataset.__getitem__`` for every item of every
epoch and measured data loading about 12x slower than plain ``RandomResizedCrop``. Here the ViT
runs once over the dataset, in batches (:func:`compute_attention_maps`), and each image's
mean-over-heads last-layer CLS attention is stored as a small float16 array (a few hundred bytes
to a few KB) in an :class:`~headless.train.attention_maps.store.AttentionMapStore`.

Batching images of different sizes: each image is resized so that its longer side is ``size``
and both sides are whole multiples of the patch size (the shorter side rounded to the nearest
multiple, so the aspect ratio changes by less than half a patch). The patch grid then tiles the
image exactly (no padding tokens), images of the same grid shape share a batch, and a dataset has
at most ``size // patch`` distinct shapes. Cell ``(i, j)`` of a stored ``(h, w)`` map covers rows
``[i H / h, (i + 1) H / h)`` and columns ``[j W / w, (j + 1) W / w)`` of the original image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from headless.progress import Progress, ProgressGen
from headless.train.attention_maps.store import (
    AttentionMapStore,
    backbone_key,
    default_cache_dir,
)


def grid_shape(height: int, width: int, size: int, patch_size: int) -> tuple[int, int]:
    """Resized ``(H, W)`` in pixels: longer side ``size`` and both sides multiples of the patch.

    ``size`` itself is rounded to the nearest multiple of the patch size (at least one patch).
    """
    p = int(patch_size)
    longer = max(p, int(round(size / p)) * p)
    s = longer / max(height, width)
    return (max(p, int(round(height * s / p)) * p), max(p, int(round(width * s / p)) * p))


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
    A missing file stops the run before any work; an unreadable one is skipped and recorded in
    the returned store's ``failures`` (path -> reason), like the other batch commands do.
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
    hws: dict[int, tuple[int, int]] = {}
    for i, p in enumerate(todo):
        try:
            hw = _image_hw(p)
        except (ValueError, OSError) as exc:  # ImageError included: one bad file skips itself
            store.failures[str(p)] = str(exc)
            continue
        hws[i] = hw
        groups.setdefault(grid_shape(hw[0], hw[1], size, patch), []).append(i)
    if not groups:
        yield Progress(total, total, f"no readable image among {total}")
        return store

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, int(num_threads))) as pool:

        def submit(item: tuple[tuple[int, int], list[int]]) -> list[Any]:
            shape, idx = item
            return [pool.submit(_load_resized, todo[i], shape, mean, std) for i in idx]

        batches = list(_batches(groups, batch_size))
        pending = submit(batches[0])
        for b, (_, idx) in enumerate(batches):
            loaded = []
            for i, future in zip(idx, pending):
                try:
                    loaded.append((i, future.result()))
                except (ValueError, OSError) as exc:  # decodes in the header, fails in the body
                    store.failures[str(todo[i])] = str(exc)
            if b + 1 < len(batches):  # decode the next batch while the model runs
                pending = submit(batches[b + 1])
            if loaded:
                batch = torch.stack([tensor for _, tensor in loaded]).to(device)
                with torch.inference_mode():
                    attn = extract(backbone, batch).attn
                maps = torch.as_tensor(attn).float().mean(dim=1).cpu().numpy()
                for (i, _), m in zip(loaded, maps):
                    store.put(todo[i], m, hws[i])
            done += len(idx)
            yield Progress(done, total, f"attention maps {done}/{total}")
    return store
