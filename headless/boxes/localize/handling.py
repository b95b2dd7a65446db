"""How features are prepared for the box methods, per backbone family.

DINO (v1) features are fed to LOST / TokenCut / MOST exactly as the authors' code does (preset
``"reference"``). DINOv2 features break those rules: on real DINOv2 ViT-S/14 photos the last
block's keys share one dominant direction (the mean key holds ~89 % of their energy and every
pairwise key product is positive), so LOST's degree is the same for every patch, TokenCut's graph
is complete and MOST's similarity maps are all flat. Objects in photo collections are also often
larger than the background, which defeats LOST's "lowest degree = object" seed. The ``"dinov2"``
preset therefore

* removes the shared component (each image's mean token is subtracted, ``centre="mean"``;
  ``"project"`` removes only the mean direction instead);
* feeds the final-norm patch tokens (``which="patch"``) rather than the keys (measured better on
  every method);
* seeds LOST with the CLS attention maximum (after seed 000's cleaning: DINO's outlier maximum
  replaced by the mean), picks TokenCut's foreground side and filters MOST's pools by that
  attention, since the attention's peak lies on the object far more often than the lowest-degree
  patch does;
* replaces high-norm artifact tokens (Darcet et al. 2023, larger DINOv2 models without registers)
  by the mean of their non-artifact neighbours in every feature and in the attention map.

Everything here costs O(tokens x dim): far below the methods' own O(tokens^2) work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Feature preparations (``centre``): none (reference), subtract the mean, project it out.
CENTRE_MODES = ("none", "mean", "project")
#: The preset names accepted by :func:`resolve_handling` ("auto" = from the backbone family).
PRESETS = ("auto", "reference", "dinov2")
#: A patch token is an artifact when its norm exceeds this many times the image's median norm.
ARTIFACT_RATIO = 2.0


@dataclass(frozen=True)
class Handling:
    """The feature handling behind a run's boxes (recorded with every output)."""

    preset: str = "reference"
    which: str = "k"  # features fed to LOST / TokenCut / MOST
    centre: str = "none"
    artifacts: str = "keep"  # "keep" | "inpaint"
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for run metadata."""
        return asdict(self)


REFERENCE = Handling()
DINOV2 = Handling(
    preset="dinov2",
    which="patch",
    centre="mean",
    artifacts="inpaint",
    method_params={
        # LOST on the centred keys, expanded from the whole attended region under an attention
        # prior (chosen on the even-index raccoon photos; held-out odd photos in the README)
        "lost": {"which": "k", "seed": "attention", "expansion": "attention", "prior": 0.5,
                 "prior_sigma": 1.0, "mask_threshold": 0.15, "opening": 1},
        "tokencut": {"foreground": "attention"},
        # MOST on the centred keys, one box per prominent attention peak (box counting found 5
        # of the 33 raccoons on multi-raccoon photos, this 23; chosen on the even-index photos)
        "most": {"which": "k", "pool_filter": "attention", "seed": "attention",
                 "expansion": "attention", "mask_threshold": 0.15, "prior": 0.5,
                 "prior_sigma": 1.0, "opening": 1, "peak_prominence": 0.4, "peak_sigma": 1.0,
                 "min_mass": 0.3},
        "dino": {},  # measured: the plain seed-000 box is as good as the cleaned one here
    },
)


def resolve_handling(handling: str | Handling = "auto", family: str | None = None) -> Handling:
    """The :class:`Handling` for a preset name; ``"auto"`` picks it from the backbone family.

    DINOv2 (with or without registers) gets ``"dinov2"``; DINO v1, the test architectures and
    unknown families get ``"reference"`` (the papers' settings, unchanged).
    """
    if isinstance(handling, Handling):
        return handling
    name = str(handling).lower()
    if name not in PRESETS:
        raise ValueError(f"handling must be one of {', '.join(PRESETS)}, got {handling!r}")
    if name == "auto":
        name = "dinov2" if family == "dinov2" else "reference"
    return DINOV2 if name == "dinov2" else REFERENCE


def centre_tokens(tokens: np.ndarray, mode: str = "mean", inplace: bool = False) -> np.ndarray:
    """``(T, D)`` tokens with their shared component removed (``mode`` of :data:`CENTRE_MODES`).

    ``"mean"`` subtracts the mean token; ``"project"`` removes each token's component along the
    mean direction (keeps the norms' spread along the other directions). ``inplace`` writes
    into a float32 ``tokens`` the caller owns (one pass over the tokens fewer).
    """
    if mode == "none":
        return tokens
    if mode not in CENTRE_MODES:
        raise ValueError(f"centre must be one of {', '.join(CENTRE_MODES)}, got {mode!r}")
    t = np.asarray(tokens, dtype=np.float32)
    mean = t.mean(axis=0)
    if mode == "mean":
        if inplace and t is tokens:
            t -= mean
            return t
        return t - mean
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        return t
    u = mean / norm
    return t - np.outer(t @ u, u)


def token_norms(patch: Any) -> np.ndarray:
    """L2 norm of each token of ``patch`` (``(..., D)`` array or tensor), flattened.

    A torch tensor is reduced by torch (threaded, no float64 copy): next to a 3-5 ms box method
    the 0.2 ms of ``np.linalg.norm`` on 672 x 384 tokens was most of the handling's cost.
    """
    if hasattr(patch, "detach"):
        import torch

        t = patch.detach().reshape(-1, patch.shape[-1]).float()
        return torch.linalg.vector_norm(t, dim=1).cpu().numpy()
    t = np.asarray(patch, dtype=np.float32).reshape(-1, np.shape(patch)[-1])
    return np.sqrt(np.einsum("ij,ij->i", t, t))


def artifact_tokens(norms: np.ndarray, ratio: float = ARTIFACT_RATIO) -> np.ndarray:
    """Boolean mask of high-norm artifact tokens: norm > ``ratio`` x the median norm.

    Darcet et al. (2023) find such tokens (norms ~ 3-10x the others) in DINOv2 ViT-L/g without
    registers, on background patches; they hold global information and break local methods.
    """
    n = np.asarray(norms, dtype=np.float64)
    if n.size == 0:
        return np.zeros(n.shape, dtype=bool)
    return n > ratio * float(np.median(n))


def inpaint(values: np.ndarray, bad: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``values`` (``(T, ...)`` over a row-major ``grid``) with the ``bad`` tokens replaced.

    Each bad token takes the mean of its good 8-neighbours (of all good tokens if none).
    """
    if not bad.any():
        return values
    h, w = grid
    out = np.array(values, dtype=np.float32, copy=True)
    good = ~bad
    for t in np.flatnonzero(bad):
        r, c = divmod(int(t), w)
        nb = [rr * w + cc for rr in range(max(r - 1, 0), min(r + 2, h))
              for cc in range(max(c - 1, 0), min(c + 2, w)) if good[rr * w + cc]]
        src = np.asarray(nb) if nb else np.flatnonzero(good)
        if src.size:
            out[t] = values[src].mean(axis=0)
    return out


def attention_prior(attn_map: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """An ``(h, w)`` attention map Gaussian-smoothed over ``sigma`` patches, scaled to max 1.

    A location prior: DINOv2's CLS attention is peaky (a few patches on the object's head) but
    sits on the object far more often than the similarity maps do, which also light up other
    objects of the same "foreground" kind (a person holding the raccoon, a dog beside it).
    """
    from scipy import ndimage

    a = np.asarray(attn_map, dtype=np.float64)
    if sigma > 0:
        a = ndimage.gaussian_filter(a, float(sigma))
    top = float(a.max()) if a.size else 0.0
    return a / top if top > 0 else np.zeros_like(a)


def weigh_by_attention(response: np.ndarray, attn_map: np.ndarray, power: float,
                       sigma: float = 1.0) -> np.ndarray:
    """A flat ``response`` (clipped at 0) times :func:`attention_prior` to ``power``: the
    location prior LOST's and MOST's DINOv2 presets put on their soft masks."""
    located = attention_prior(attn_map, sigma).reshape(-1)
    return np.clip(np.asarray(response, dtype=np.float64), 0.0, None) * located**power


def soft_mask(response: np.ndarray, attn_map: np.ndarray | None, grid: tuple[int, int],
              prior: float, prior_sigma: float, mask_threshold: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(response, mask)`` of LOST's and MOST's expansion: the flat ``response`` weighed by
    the attention prior when ``prior > 0`` (:func:`weigh_by_attention`), and the ``(h, w)``
    mask ``response > mask_threshold * max(response)`` (``> 0`` when the threshold is 0)."""
    h, w = grid
    if prior > 0:
        response = weigh_by_attention(response, np.asarray(attn_map).reshape(h, w), prior,
                                      prior_sigma)
    cut = float(mask_threshold) * float(response.max()) if mask_threshold > 0 else 0.0
    return response, (response > cut).reshape(h, w)


def clean_attention(attn_map: np.ndarray) -> np.ndarray:
    """Seed 000's cleaning of an ``(h, w)`` map: the (first) maximum replaced by the others' mean.

    DINO's CLS attention has an outlier patch; this keeps it from seeding a method on its own.
    """
    a = np.array(attn_map, dtype=np.float64, copy=True)
    flat = a.reshape(-1)
    if flat.size > 1:
        k = int(np.argmax(flat))
        flat[k] = (flat.sum() - flat[k]) / (flat.size - 1)
    return a
