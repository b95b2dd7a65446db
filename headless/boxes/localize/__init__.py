"""Unsupervised object boxes from ViT features: DINO attention, LOST, MOST and TokenCut.

Each method is a pure function of features (numpy arrays or CPU torch tensors), never of a model,
so it is testable on planted features and runs on cached features. :func:`localize` picks the
right features out of a :class:`headless.features.forward.Features` and calls one of them.

Coordinates: the methods work in the pixels of the network input (``image_hw``, the resized,
unpadded image whose grid is ``(ceil(H/p), ceil(W/p))``) and, when given ``orig_hw`` (the
original image's ``(H, W)``), scale each axis by ``orig / input`` so the returned boxes are in
original-image pixels, as :class:`headless.boxes.Box` requires.

Feature handling: :mod:`headless.boxes.localize.handling` holds the per-family presets
(``handling="auto"``: DINO v1 keeps the papers' settings exactly, DINOv2 gets centred patch tokens
and attention seeds). :func:`localize` applies the preset and :func:`resolved_settings` says what
was used, for every output's metadata.

torch is imported inside the functions that need it; importing this package does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from headless.boxes.localize._grid import to_numpy
from headless.boxes.localize.dino_attention import dino_attention_boxes
from headless.boxes.localize.handling import (
    PRESETS,
    Handling,
    artifact_tokens,
    centre_tokens,
    clean_attention,
    inpaint,
    resolve_handling,
    token_norms,
)
from headless.boxes.localize.lost import lost
from headless.boxes.localize.most import most
from headless.boxes.localize.params import check_params
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

#: Features LOST / TokenCut / MOST can be fed; "auto" = the family preset's choice.
WHICH_CHOICES: tuple[str, ...] = ("auto", "k", "q", "v", "patch")


def resolved_settings(
    method: str, family: str | None, which: str = "auto", handling: str | Handling = "auto",
    **params: Any,
) -> dict[str, Any]:
    """What :func:`localize` will use: preset, features, centring, artifacts and parameters.

    The dictionary goes into every output's metadata so a box can be traced to its settings.
    """
    name = _ALIASES.get(method.lower(), method.lower())
    h = resolve_handling(handling, family)
    merged = {**DEFAULTS.get(name, {}), **h.method_params.get(name, {}), **params}
    preset_which = merged.pop("which", h.which)
    return {
        "method": name,
        "family": family or "",
        "handling": h.preset,
        "which": "attn" if name == "dino" else (preset_which if which == "auto" else which),
        "centre": "none" if name == "dino" else h.centre,
        "artifacts": h.artifacts,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()},
    }


def localize(
    method: str,
    features: Any,
    index: int = 0,
    which: str = "auto",
    *,
    handling: str | Handling = "auto",
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
        which: ``"k"`` (the references' choice), ``"q"`` or ``"v"``: the last block's keys,
            queries or values fed to LOST / MOST / TokenCut; ``"patch"`` the final-norm patch
            tokens; ``"auto"`` (default) the preset's (``k`` for DINO, ``patch`` for DINOv2).
            Ignored by ``"dino"``, which uses ``attn``.
        handling: ``"auto"`` (from ``features.family``), ``"reference"`` or ``"dinov2"`` (see
            :mod:`headless.boxes.localize.handling`); explicit ``params`` override the preset's.
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
    if which not in WHICH_CHOICES:
        raise ValueError(f"which must be one of {', '.join(WHICH_CHOICES)}, got {which!r}")
    function = METHOD_FUNCTIONS[name]
    check_params(name, function, params)
    h = resolve_handling(handling, getattr(features, "family", None) or None)
    params = {**h.method_params.get(name, {}), **params}
    preset_which = params.pop("which", h.which)  # a preset may pick features per method
    which = preset_which if which == "auto" else which
    grid = tuple(int(v) for v in features.grid)
    patch_size = int(features.patch_size)
    image_hw = tuple(int(v) for v in features.input_hw)

    attn = features.attn
    needs_attention = name == "dino" or "attention" in (
        params.get("seed"), params.get("foreground"), params.get("pool_filter"),
        params.get("expansion")) or float(params.get("prior", 0) or 0) > 0
    if needs_attention and attn is None:
        raise ValueError(f"these features hold no attention maps; {name!r} with these settings "
                         "needs features.attn")
    tokens = None
    if name != "dino":
        tokens = getattr(features, which)
        if tokens is None:
            raise ValueError(f"these features hold no {which!r} tokens")
        _check_index(index, tokens.shape[0])
        tokens = to_numpy(tokens[index]).astype(np.float32)
        tokens = tokens.reshape(grid[0] * grid[1], -1) if tokens.ndim == 3 else tokens
    else:
        _check_index(index, attn.shape[0])
    heads = to_numpy(attn[index]).astype(np.float64) if attn is not None else None

    if h.artifacts == "inpaint" and getattr(features, "patch", None) is not None:
        norms = token_norms(features.patch[index])
        bad = artifact_tokens(norms)
        if bad.any() and bad.size == grid[0] * grid[1]:
            if tokens is not None:
                tokens = inpaint(tokens, bad, grid)
            if heads is not None:
                flat = heads.reshape(heads.shape[0], -1).T
                heads = inpaint(flat, bad, grid).T.reshape(heads.shape)

    if name == "dino":
        return dino_attention_boxes(heads, patch_size, image_hw, orig_hw=orig_hw, **params)
    if needs_attention:
        params["attention"] = clean_attention(heads.mean(axis=0))
    tokens = centre_tokens(tokens, h.centre, inplace=True)  # ``tokens`` is this call's copy
    return function(tokens, grid, patch_size, image_hw, orig_hw=orig_hw, **params)


#: method name -> the function that computes its boxes (its keywords are its parameters)
METHOD_FUNCTIONS = {"dino": dino_attention_boxes, "lost": lost, "most": most,
                    "tokencut": tokencut}


def _check_index(index: int, batch: int) -> None:
    if not -batch <= index < batch:
        raise IndexError(f"image index {index} out of range for a batch of {batch}")


__all__ = [
    "DEFAULTS",
    "METHODS",
    "METHOD_FUNCTIONS",
    "PRESETS",
    "WHICH_CHOICES",
    "Handling",
    "resolve_handling",
    "resolved_settings",
    "dino_attention_boxes",
    "localize",
    "lost",
    "most",
    "tokencut",
]
