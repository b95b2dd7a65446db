"""Scribbles and the images they are drawn on: classes from scribble values, shape checks, slices.

The sorted non-zero scribble values (85/170/255, 127/254...) are the classes, 0 is unlabelled;
an image may be 2D grey, RGB(A), or a stack of either (split into 2D slices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from headless.images import ImageError, squeeze_leading


class ScribbleError(ValueError):
    """Scribbles that cannot train a classifier: empty, one class, wrong shape or type."""


@dataclass(frozen=True)
class ClassMap:
    """Scribble values (sorted, non-zero) and their names; index i <-> value ``values[i]``."""

    values: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_scribbles(
        cls, scribbles: np.ndarray | Sequence[np.ndarray], names: dict[int, str] | None = None
    ) -> ClassMap:
        arrays = [scribbles] if isinstance(scribbles, np.ndarray) else list(scribbles)
        vals: set[int] = set()
        for a in arrays:
            a = check_scribbles(a)
            vals.update(int(v) for v in np.unique(a) if v != 0)
        values = tuple(sorted(vals))
        names = names or {}
        return cls(values, tuple(str(names.get(v, f"class {v}")) for v in values))

    def indices(self, labels: np.ndarray) -> np.ndarray:
        """Class index of each labelled value (all values must be classes of this map)."""
        return np.searchsorted(np.asarray(self.values), labels)

    def require_trainable(self) -> None:
        if not self.values:
            raise ScribbleError(
                "no scribbles yet: paint strokes of at least two classes (label values > 0)"
            )
        if len(self.values) < 2:
            raise ScribbleError(
                f"only one class is scribbled ({self.names[0]!r}, value {self.values[0]}): "
                "paint at least one stroke of another class"
            )


def check_scribbles(scribbles: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Scribbles as a non-negative integer array, optionally of the image's spatial ``shape``."""
    s = np.asarray(scribbles)
    if s.dtype == bool:
        s = s.astype(np.uint8)
    if not np.issubdtype(s.dtype, np.integer):
        if not np.issubdtype(s.dtype, np.floating) or not np.all(np.isfinite(s)) or \
                not np.array_equal(s, np.round(s)):
            raise ScribbleError(f"scribbles must be whole numbers (labels), got {s.dtype} values")
        s = s.astype(np.int64)
    if s.size and s.min() < 0:
        raise ScribbleError("scribble values must be 0 (unlabelled) or positive class values")
    if shape is not None and tuple(s.shape) != tuple(shape):
        raise ScribbleError(
            f"the scribbles have shape {tuple(s.shape)} but the image is {tuple(shape)}: "
            "draw the scribbles on this image (same height and width)"
        )
    return s


def image_slices(image: np.ndarray) -> list[np.ndarray]:
    """A 2D image, an RGB(A) image, or a stack of either -> list of 2D (grey or colour) images.

    ``(N, H, W)`` is a stack of N grey slices (as napari shows it), ``(H, W, 3|4)`` one colour
    image, ``(N, H, W, 3|4)`` a stack of colour images.
    """
    a = squeeze_leading(np.asarray(image))
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):
        return [a]
    if a.ndim == 3 or (a.ndim == 4 and a.shape[-1] in (3, 4)):
        return [a[i] for i in range(a.shape[0])]
    raise ImageError(f"expected an image or a stack of images, got shape {a.shape}")


def spatial_shape(image: np.ndarray) -> tuple[int, int]:
    a = np.asarray(image)
    return tuple(a.shape[:2])  # type: ignore[return-value]


def one_image(image: np.ndarray) -> np.ndarray:
    """The one 2D (grey or colour) image of ``image``; a stack of several is refused."""
    slices = image_slices(image)
    if len(slices) != 1:
        raise ImageError(f"expected one 2D image, got a stack of {len(slices)}")
    return slices[0]
