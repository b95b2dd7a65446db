"""Reading images and labels, and turning any image into what a ViT eats.

Real files are messy: grey or RGB or RGBA, 8/16-bit or float, a leading axis of length 1, stacks.
Everything here either normalises such input or raises :class:`ImageError` with a message that
names the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class ImageError(ValueError):
    """An image or label file that cannot be used, with a message naming what is wrong."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file into a numpy array, as stored (no scaling), singleton axes squeezed.

    TIFFs go through tifffile (stacks, 16-bit, float); everything else through imageio.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(str(path))
        else:
            import imageio.v3 as iio

            arr = iio.imread(str(path))
    except Exception as exc:  # corrupt or unsupported file: say which one
        why = " ".join(str(exc).split())[:300]  # one line, however the reader words it
        raise ImageError(f"{path}: cannot be read as an image ({type(exc).__name__}: {why})"
                         ) from exc
    arr = np.asarray(arr)
    if arr.size == 0:
        raise ImageError(f"{path}: the image is empty (shape {arr.shape})")
    return squeeze_leading(arr)


def read_labels(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a label / scribble image as integers; optionally check it matches ``shape`` (H, W)."""
    arr = read_image(path)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and (shape is None or len(shape) == 2):
        arr = arr[..., 0]  # labels saved as RGB grey: take one channel
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.round(arr)):
            raise ImageError(f"{path}: labels must be whole numbers, got {arr.dtype} values")
        arr = arr.astype(np.int64)
    if shape is not None and tuple(arr.shape[-len(shape):]) != tuple(shape):
        raise ImageError(
            f"{path}: labels have shape {arr.shape}, the image has shape {tuple(shape)}"
        )
    return arr


def squeeze_leading(arr: np.ndarray) -> np.ndarray:
    """Drop leading axes of length 1 (``(1, H, W)`` -> ``(H, W)``) but never the spatial ones."""
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def is_rgb(arr: np.ndarray) -> bool:
    """True when the last axis holds colour channels (RGB or RGBA)."""
    return arr.ndim >= 3 and arr.shape[-1] in (3, 4)


def to_float01(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric image to float32 in [0, 1].

    Integer types are divided by their range (uint8 by 255, uint16 by 65535 unless the data use
    far less, then by the data's own max so 12-bit microscopy is not black); floats are min-max
    scaled unless they already lie in [0, 1]; booleans become 0/1.
    """
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        lo = min(0, int(a.min()))
        hi = int(a.max())
        top = info.max if hi > info.max / 16 else max(hi, 1)
        return ((a.astype(np.float32) - lo) / float(top - lo)).clip(0, 1)
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        a = np.real(a).astype(np.float32)
        finite = np.isfinite(a)
        if not finite.any():
            raise ImageError("the image has no finite values")
        a = np.where(finite, a, 0.0).astype(np.float32)
        lo, hi = float(a[finite].min()), float(a[finite].max())
        if lo >= 0.0 and hi <= 1.0:
            return a
        return ((a - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    raise ImageError(f"unsupported image type {a.dtype}")


def to_rgb01(arr: np.ndarray) -> np.ndarray:
    """Any 2D image (grey, RGB, RGBA, 2-channel) -> float32 ``(H, W, 3)`` in [0, 1].

    Grey is repeated over three channels; RGBA loses alpha (composited on black would hide
    content); a 2D image with a small leading channel axis ``(C, H, W)`` is moved to the end.
    """
    a = squeeze_leading(np.asarray(arr))
    if a.ndim == 3 and a.shape[0] in (2, 3, 4) and a.shape[-1] not in (3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        f = to_float01(a)
        return np.repeat(f[..., None], 3, axis=-1)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return to_float01(a[..., :3])
    if a.ndim == 3 and a.shape[-1] == 2:
        f = to_float01(a)
        return np.concatenate([f, f[..., :1]], axis=-1)
    raise ImageError(
        f"expected one 2D image (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}. "
        "For a stack, pass one slice (the GUI uses the current slice)."
    )


@dataclass(frozen=True)
class FolderListing:
    """Images found in a folder, and the files skipped because they are not images."""

    images: list[Path]
    skipped: list[Path]


def list_images(folder: str | Path) -> FolderListing:
    """Sorted image files of a folder (not recursive); other files are listed as skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    images, skipped = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        elif p.is_file():
            skipped.append(p)
    return FolderListing(images, skipped)


def expand_inputs(inputs: list[str | Path]) -> FolderListing:
    """CLI helper: files stay as given, folders expand to their images."""
    images: list[Path] = []
    skipped: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            listing = list_images(p)
            images += listing.images
            skipped += listing.skipped
        elif p.exists():
            images.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    return FolderListing(images, skipped)


def output_stems(items: list[str | Path]) -> list[str]:
    """One distinct output stem per input, so no output overwrites another.

    A stem that is unique stays as it is (``a.png`` -> ``a``, as before). Inputs whose stems
    collide get their suffix (``a.png``, ``a.tif`` -> ``a_png``, ``a_tif``); the same file name
    from different folders gets the folder too (``x/same.png`` -> ``x_same_png``); anything still
    equal is numbered.
    """
    paths = [Path(p) for p in items]

    def collisions(names: list[str]) -> set[str]:
        seen: dict[str, int] = {}
        for n in names:
            seen[n] = seen.get(n, 0) + 1
        return {n for n, c in seen.items() if c > 1}

    stems = [p.stem for p in paths]
    clash = collisions(stems)
    stems = [f"{p.stem}_{p.suffix.lstrip('.')}" if s in clash and p.suffix else s
             for p, s in zip(paths, stems)]
    clash = collisions(stems)
    stems = [f"{p.parent.name}_{s}" if s in clash and p.parent.name else s
             for p, s in zip(paths, stems)]
    clash, counter = collisions(stems), {}
    out = []
    for s in stems:
        if s in clash:
            counter[s] = counter.get(s, 0) + 1
            s = f"{s}_{counter[s]}"
        out.append(s)
    return out
