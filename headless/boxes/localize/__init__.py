"""Unsupervised object boxes from ViT features: DINO attention, LOST, MOST and TokenCut.

Each method is a pure function of features (numpy arrays or CPU torch tensors), never of a model,
so it is testable on planted features and runs on cached features. :func:`localize` picks the
right features out of a :class:`headless.features.forward.Features` and calls one of them.

Coordinates: the methods work in the pixels of the network input (``image_hw``, the resized,
unpadded image whose grid is ``(ceil(H/p), ceil(W/p))``) and, when given ``orig_hw`` (the
original image's ``(H, W)``), scale each axis by ``orig / input`` so the returned boxes are in
original-image pixels, as :class:`headless.boxes.Box` requires.

torch is imported inside the functions that need it; importing this package does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from headless.boxes.localize.dino_attention import dino_attention_boxes
from headless.boxes.localize.lost import lost
from headless.boxes.localize.most import most
from headless.boxes.localize.tokencut import tokencut
from headless.boxes.types import Box

#: Method names accepted by :func:`localize` (also the ``Box.source`` of their boxes).
METHODS: tuple[str, ...] = ("dino", "lost", "most", "tokencut")

#: The papers' / reference runs' defaults, for GUIs and CLIs that show them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "dino": {"keep": 0.6, "heads": "mean", "component": "all"},
    "lost": {"k": 100, "tie_break": "reference"},
    "most": {"ks": (1, 2, 3, 4, 5), "dbscan_eps": 2.0, "filter_boxes": True},
    "tokencut": {"tau": 0.2, "eps": 1e-5, "binary_graph": True, "solver": "standard"},
}

_ALIASES = {"dino_attention": "dino", "attention": "dino", "ncut": "tokencut"}


def localize(
    method: str,
    features: Any,
    index: int = 0,
    which: str = "k",
    *,
    orig_hw: Sequence[int] | None = None,
    **params: Any,
) -> list[Box]:
    """Boxes for image ``index`` of a ``Features`` batch with one of :data:`METHODS`.

    Args:
        method: ``"dino"``, ``"lost"``, ``"most"`` or ``"tokencut"``.
        features: a :class:`headless.features.forward.Features` (``q``/``k``/``v`` of shape
            ``(B, h*w, D)``, ``attn`` ``(B, heads, h, w)``, ``grid``, ``patch_size``,
            ``input_hw``).
        index: which image of the batch.
        which: ``"k"`` (the references' default), ``"q"`` or ``"v"``: the last block's keys,
            queries or values fed to LOST / MOST / TokenCut. Ignored by ``"dino"``, which uses
            ``attn``.
        orig_hw: ``(H, W)`` of the original image when the features were computed on a resized
            copy; boxes are mapped back to it. ``None`` = boxes in ``features.input_hw`` pixels.
        **params: the method's parameters (see :data:`DEFAULTS` and each function).

    Returns:
        Boxes in original-image pixels with ``source`` = the method name and ``score`` set;
        ``[]`` when the method finds no foreground (the caller reports it).
    """
    name = _ALIASES.get(method.lower(), method.lower())
    if name not in METHODS:
        raise ValueError(f"unknown localisation method {method!r}; choose from {METHODS}")
    if which not in ("q", "k", "v"):
        raise ValueError(f"which must be 'q', 'k' or 'v', got {which!r}")
    grid = tuple(int(v) for v in features.grid)
    patch_size = int(features.patch_size)
    image_hw = tuple(int(v) for v in features.input_hw)

    if name == "dino":
        attn = features.attn
        if attn is None:
            raise ValueError("these features hold no attention maps; 'dino' needs features.attn")
        _check_index(index, attn.shape[0])
        return dino_attention_boxes(
            attn[index], patch_size, image_hw, orig_hw=orig_hw, **params
        )

    tokens = getattr(features, which)
    if tokens is None:
        raise ValueError(f"these features hold no {which!r} tokens (last-block {which})")
    _check_index(index, tokens.shape[0])
    function = {"lost": lost, "most": most, "tokencut": tokencut}[name]
    return function(tokens[index], grid, patch_size, image_hw, orig_hw=orig_hw, **params)


def _check_index(index: int, batch: int) -> None:
    if not -batch <= index < batch:
        raise IndexError(f"image index {index} out of range for a batch of {batch}")


__all__ = [
    "DEFAULTS",
    "METHODS",
    "dino_attention_boxes",
    "localize",
    "lost",
    "most",
    "tokencut",
]
