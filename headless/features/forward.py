"""One forward pass -> patch tokens, CLS, last-block q/k/v and CLS attention; PCA to RGB.

The last block's ``attn.qkv`` output is captured with a forward hook, so q, k and v cost nothing
extra; the CLS row of the last attention is recomputed from q and k (one row per head, not the
full T x T matrix), which is why asking for attention costs almost nothing over a plain
``forward_features``.

Size rule: an image whose sides are not multiples of the patch size ``p`` is zero-padded (after
normalisation) on the bottom and right to the next multiple; the grid is
``(ceil(H / p), ceil(W / p))`` and every map or box refers to the unpadded image. Images larger
than ``max_tokens`` patches are downscaled (the factor is recorded); images smaller than four
patches on their short side are upscaled. Both are reported in ``Features.notes``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from headless.images import to_rgb01
from headless.progress import Progress, ProgressGen

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from headless.features.backbones import Backbone, BackboneSpec

DEFAULT_MAX_TOKENS = 128 * 128  # 1792 px at patch 14: beyond this attention memory explodes
MIN_PATCHES = 4


@dataclass
class Features:
    """Outputs of one forward pass (CPU float32 tensors; batch first)."""

    patch: torch.Tensor  # (B, h, w, D) final-norm patch tokens, CLS and registers dropped
    cls: torch.Tensor  # (B, D)
    q: torch.Tensor  # (B, h*w, D) last block, heads concatenated, raw
    k: torch.Tensor
    v: torch.Tensor
    attn: torch.Tensor  # (B, heads, h, w) last-layer CLS -> patch attention
    grid: tuple[int, int]
    patch_size: int
    input_hw: tuple[int, int]  # size fed to the model (after resizing, before padding)
    orig_hw: tuple[int, int] = (0, 0)  # size of the original image
    weights_label: str = ""
    notes: list[str] = field(default_factory=list)
    family: str = ""  # the backbone family ("dino", "dinov2", "test"): picks box-method presets

    @property
    def scale(self) -> tuple[float, float]:
        """Original pixels per model-input pixel, (rows, cols)."""
        oh, ow = self.orig_hw if self.orig_hw != (0, 0) else self.input_hw
        return oh / self.input_hw[0], ow / self.input_hw[1]

    def layer_transform(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """napari ``scale`` and ``translate`` that lay a grid map exactly over the image.

        Patch ``i`` covers input pixels ``[i p, (i + 1) p)``, i.e. original pixel edges
        ``[i p s, (i + 1) p s)``; napari centres data pixel ``i`` at ``i * scale + translate``, and
        image pixel ``j`` (edges ``[j, j + 1)``) at ``j``; so scale = ``p s`` and translate =
        ``p s / 2 - 1 / 2``.
        """
        sr, sc = self.scale
        p = self.patch_size
        return (p * sr, p * sc), (p * sr / 2 - 0.5, p * sc / 2 - 0.5)


def plan_size(
    hw: tuple[int, int], patch: int, size: int | None = None, max_tokens: int = DEFAULT_MAX_TOKENS
) -> tuple[tuple[int, int], list[str]]:
    """The (H, W) the model sees for an image of size ``hw``, and notes on any resizing.

    ``size`` resizes so the longer side equals it; then too many tokens downscale and too few
    upscale, keeping the aspect ratio.
    """
    h, w = hw
    notes: list[str] = []
    if size:
        f = size / max(h, w)
        h, w = max(1, round(h * f)), max(1, round(w * f))
    tokens = math.ceil(h / patch) * math.ceil(w / patch)
    if tokens > max_tokens:
        f = math.sqrt(max_tokens / tokens)
        nh, nw = max(1, int(h * f)), max(1, int(w * f))
        while math.ceil(nh / patch) * math.ceil(nw / patch) > max_tokens:
            nh, nw = max(1, nh - 1), max(1, int(nw * (nh - 1) / max(nh, 1)))
        notes.append(
            f"downscaled from {h}x{w} to {nh}x{nw} px: {tokens} patches exceed the limit of "
            f"{max_tokens} (raise max_tokens if memory allows)"
        )
        h, w = nh, nw
    if min(h, w) < MIN_PATCHES * patch:
        f = MIN_PATCHES * patch / min(h, w)
        nh, nw = round(h * f), round(w * f)
        notes.append(
            f"upscaled from {h}x{w} to {nh}x{nw} px: at least {MIN_PATCHES} patches per side"
        )
        h, w = nh, nw
    return (h, w), notes


def preprocess(
    image: np.ndarray, spec: BackboneSpec, size: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> tuple[torch.Tensor, list[str]]:
    """Any 2D image -> normalised ``(3, H, W)`` float tensor at the planned size, plus notes."""
    import torch
    import torch.nn.functional as F

    rgb = to_rgb01(image)
    (h, w), notes = plan_size(rgb.shape[:2], spec.patch_size, size, max_tokens)
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    if (h, w) != rgb.shape[:2]:
        t = F.interpolate(t[None], size=(h, w), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (t - mean) / std, notes


def pad_to_patch(batch: torch.Tensor, patch: int) -> torch.Tensor:
    """Zero-pad ``(B, C, H, W)`` on the bottom and right to multiples of ``patch``."""
    import torch.nn.functional as F

    h, w = batch.shape[-2:]
    ph, pw = (-h) % patch, (-w) % patch
    return F.pad(batch, (0, pw, 0, ph)) if (ph or pw) else batch


def extract(backbone: Backbone, batch: torch.Tensor, autocast: bool | str = True) -> Features:
    """Run the backbone on a normalised ``(B, 3, H, W)`` batch and collect every output.

    ``autocast``: True = bf16 on CUDA (float32 elsewhere), ``"bf16"`` = bf16 on any device (CPUs
    with AMX run it about 3x faster), False = float32. Outputs are float32 either way.
    """
    import torch

    model = backbone.model
    p = backbone.patch_size
    input_hw = (int(batch.shape[-2]), int(batch.shape[-1]))
    x = pad_to_patch(batch, p).to(backbone.device)
    gh, gw = x.shape[-2] // p, x.shape[-1] // p
    captured: dict[str, torch.Tensor] = {}
    attn_mod = model.blocks[-1].attn
    hook = attn_mod.qkv.register_forward_hook(lambda m, i, o: captured.__setitem__("qkv", o))
    use_amp = autocast == "bf16" or (autocast is True and x.device.type == "cuda")
    try:
        with torch.inference_mode(), torch.autocast(
            device_type=x.device.type, dtype=torch.bfloat16, enabled=use_amp
        ):
            tokens = model.forward_features(x)
    finally:
        hook.remove()
    prefix = model.num_prefix_tokens  # CLS + registers
    n_heads = attn_mod.num_heads
    qkv = captured["qkv"].float()
    b, t, _ = qkv.shape
    qkv = qkv.reshape(b, t, 3, n_heads, -1).permute(2, 0, 3, 1, 4)  # (3, B, heads, T, hd)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q_cls = attn_mod.q_norm(q[:, :, :1])
    kn = attn_mod.k_norm(k)
    logits = (q_cls * attn_mod.scale) @ kn.transpose(-2, -1)  # (B, heads, 1, T)
    attn = logits.softmax(dim=-1)[:, :, 0, prefix:]  # registers and CLS dropped after softmax

    def concat_heads(z: torch.Tensor) -> torch.Tensor:
        return z.transpose(1, 2).reshape(b, t, -1)[:, prefix:].cpu()

    tokens = tokens.float()
    d = tokens.shape[-1]
    return Features(
        patch=tokens[:, prefix:].reshape(b, gh, gw, d).cpu(),
        cls=tokens[:, 0].cpu(),
        q=concat_heads(q),
        k=concat_heads(k),
        v=concat_heads(v),
        attn=attn.reshape(b, n_heads, gh, gw).cpu(),
        grid=(gh, gw),
        patch_size=p,
        input_hw=input_hw,
        orig_hw=input_hw,
        weights_label=backbone.weights_label,
        family=str(getattr(getattr(backbone, "spec", None), "family", "") or ""),
    )


def extract_image(
    backbone: Backbone, image: np.ndarray, size: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS, autocast: bool = True,
) -> Features:
    """Features of one image of any type (grey, RGB(A), 8/16-bit, float)."""
    rgb_hw = to_rgb01(image).shape[:2]
    x, notes = preprocess(image, backbone.spec, size, max_tokens)
    feats = extract(backbone, x[None], autocast=autocast)
    feats.orig_hw = (int(rgb_hw[0]), int(rgb_hw[1]))
    feats.notes = notes
    return feats


def extract_images(
    backbone: Backbone, images: Sequence[np.ndarray], size: int | None = None,
    batch_size: int = 8, max_tokens: int = DEFAULT_MAX_TOKENS,
) -> ProgressGen[list[Features]]:
    """Features of many images, batching consecutive images that share a model input size."""
    out: list[Features] = []
    i = 0
    n = len(images)
    yield Progress(0, n, "features")
    while i < n:
        first, notes0 = preprocess(images[i], backbone.spec, size, max_tokens)
        batch, notes, origs = [first], [notes0], [to_rgb01(images[i]).shape[:2]]
        j = i + 1
        while j < n and len(batch) < batch_size:
            nxt, nn = preprocess(images[j], backbone.spec, size, max_tokens)
            if nxt.shape != first.shape:
                break
            batch.append(nxt)
            notes.append(nn)
            origs.append(to_rgb01(images[j]).shape[:2])
            j += 1
        import torch

        f = extract(backbone, torch.stack(batch))
        for bi in range(len(batch)):
            item = split_batch(f, bi)
            item.orig_hw = (int(origs[bi][0]), int(origs[bi][1]))
            item.notes = notes[bi]
            out.append(item)
        i = j
        yield Progress(i, n, "features")
    return out


def split_batch(f: Features, index: int) -> Features:
    """Item ``index`` of a batched :class:`Features` as a batch of one."""
    sl = slice(index, index + 1)
    return Features(
        patch=f.patch[sl], cls=f.cls[sl], q=f.q[sl], k=f.k[sl], v=f.v[sl], attn=f.attn[sl],
        grid=f.grid, patch_size=f.patch_size, input_hw=f.input_hw, orig_hw=f.orig_hw,
        weights_label=f.weights_label, notes=list(f.notes), family=f.family,
    )


def attention_mask(attn: Any, keep: float = 0.6, clean_max: bool = False) -> np.ndarray:
    """DINO's mask: per map, the smallest set of patches holding ``keep`` of the attention mass.

    Works on ``(..., h, w)``; each map is normalised to sum 1, values are sorted in decreasing
    order and patches are kept while the cumulative mass before them is below ``keep`` (so the
    kept mass is the first to reach ``keep``). ``clean_max`` first applies seed 000's cleaning
    (:func:`clean_max_outlier`), so DINO's single outlier patch cannot hold the kept mass alone.
    """
    a = np.asarray(attn.detach().cpu().numpy() if hasattr(attn, "detach") else attn, np.float64)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    if clean_max:
        a = clean_max_outlier(a)
    shape = a.shape
    flat = a.reshape(-1, shape[-2] * shape[-1])
    total = flat.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    flat = flat / total
    order = np.argsort(-flat, axis=1, kind="stable")
    sorted_vals = np.take_along_axis(flat, order, axis=1)
    before = np.cumsum(sorted_vals, axis=1) - sorted_vals
    keep_sorted = before < keep - 1e-12
    mask = np.zeros_like(keep_sorted)
    np.put_along_axis(mask, order, keep_sorted, axis=1)
    return mask.reshape(shape)


def clean_max_outlier(attn: Any) -> np.ndarray:
    """Seed 000's cleaning of ``(..., h, w)`` maps: each map's (first) maximum is replaced by
    the mean of its other values (float64 copy)."""
    a = np.array(attn.detach().cpu().numpy() if hasattr(attn, "detach") else attn, np.float64)
    shape = a.shape
    flat = a.reshape(-1, shape[-2] * shape[-1])
    if flat.shape[1] > 1:
        k = flat.argmax(axis=1)
        rows = np.arange(flat.shape[0])
        flat[rows, k] = (flat.sum(axis=1) - flat[rows, k]) / (flat.shape[1] - 1)
    return flat.reshape(shape)


def fit_pca_map(x: Any, n_components: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Affine map ``(W (k, D), b (k,))`` such that ``x @ W.T + b`` are :func:`pca_rgb`'s values
    (before clipping) for the fitted vectors ``x`` of shape ``(N, D)``.

    Top principal components with their largest loading positive (stable colours), each scaled
    by its 1st..99th percentile over ``x``. Being affine, the map can also be applied inside an
    average over transforms (HR-Dv2), holding only ``k`` channels at full resolution.
    """
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / max(len(x) - 1, 1)
    _, vecs = np.linalg.eigh(cov)
    comps = vecs[:, ::-1][:, :n_components]
    if comps.shape[1] < n_components:
        comps = np.pad(comps, ((0, 0), (0, n_components - comps.shape[1])))
    signs = np.sign(comps[np.argmax(np.abs(comps), axis=0), np.arange(comps.shape[1])])
    comps = comps * np.where(signs == 0, 1, signs)
    proj = centred @ comps
    lo = np.percentile(proj, 1, axis=0)
    hi = np.percentile(proj, 99, axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    return (comps / span).T, -(mean @ comps + lo) / span


def pca_rgb(features: Any, mask: Any = None, n_components: int = 3) -> np.ndarray:
    """Project features on their top principal components and scale each to [0, 1].

    ``features`` is ``(..., D)``; with ``mask`` (boolean, same leading shape) the PCA is fitted on
    the masked (foreground) vectors only and applied to all (rules: :func:`fit_pca_map`).
    """
    x = np.asarray(features.detach().cpu().numpy() if hasattr(features, "detach") else features,
                   np.float64)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    fit = flat
    if mask is not None:
        m = np.asarray(mask, bool).reshape(-1)
        if m.shape[0] != flat.shape[0]:
            raise ValueError(f"mask has {m.shape[0]} entries, features have {flat.shape[0]}")
        if m.sum() >= 2:
            fit = flat[m]
    w, b = fit_pca_map(fit, n_components)
    out = (flat @ w.T + b).clip(0.0, 1.0)
    return out.reshape(*lead, n_components).astype(np.float32)


def grid_to_image(grid_map: np.ndarray, feats: Features, order: int = 0) -> np.ndarray:
    """Resample a ``(h, w[, C])`` grid map to the original image size (nearest by default)."""
    from scipy import ndimage

    p = feats.patch_size
    sr, sc = feats.scale
    oh, ow = feats.orig_hw
    g = np.asarray(grid_map)
    rows = (np.arange(oh) + 0.5) / (p * sr) - 0.5
    cols = (np.arange(ow) + 0.5) / (p * sc) - 0.5
    if order == 0:
        r = np.clip(np.floor(rows + 0.5).astype(int), 0, g.shape[0] - 1)
        c = np.clip(np.floor(cols + 0.5).astype(int), 0, g.shape[1] - 1)
        return g[r][:, c]
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    if g.ndim == 2:
        return ndimage.map_coordinates(g, [rr, cc], order=order, mode="nearest")
    return np.stack([ndimage.map_coordinates(g[..., i], [rr, cc], order=order, mode="nearest")
                     for i in range(g.shape[-1])], axis=-1)
