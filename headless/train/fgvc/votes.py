"""What a trained IELT run sees in one image: its top classes and every layer's vote map.

The image is resized as a whole to the run's input size (no crop), so each layer's (gh, gw)
map of enhanced vote counts covers the whole image; ``scale`` and ``translate`` lay it over the
image in napari (as seed 002's HeadMapVisualize overlays head votes on the picture). Because
nothing is cropped, the classes can differ slightly from ``dinoseg predict``, which centre-crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headless.progress import Progress, ProgressGen
from headless.train.data.errors import DatasetError


@dataclass
class VoteView:
    top: list[tuple[str, float]]  # (class, probability), best first
    maps: np.ndarray  # (L-1, gh, gw) float32: enhanced vote counts after each block
    selected: np.ndarray  # (L-1, gh, gw) bool: the patches each layer forwarded
    scale: tuple[float, float]
    translate: tuple[float, float]


def explain_image(run: Any, image: np.ndarray, top: int = 5, device: str = "cpu") -> VoteView:
    """Top classes and per-layer vote maps of ``image`` (any 2D grey / RGB array)."""
    import torch
    import torch.nn.functional as F

    from headless.images import to_rgb01

    model = run.model
    if not hasattr(model, "select_nums"):
        raise DatasetError("this run has a linear head: it has no per-layer votes to show")
    rgb = to_rgb01(np.asarray(image))
    h, w = rgb.shape[:2]
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(run.image_size, run.image_size), mode="bilinear",
                      antialias=True, align_corners=False).clamp(0, 1)
    mean = torch.tensor(run.mean).view(1, 3, 1, 1)
    std = torch.tensor(run.std).view(1, 3, 1, 1)
    x = ((t - mean) / std).to(device)
    with torch.no_grad():
        out = model.forward_all(x, keep_maps=True)
    prob = out.logits.float().softmax(-1)[0].cpu()
    k = min(top, prob.numel())
    p, idx = prob.topk(k)
    maps = torch.stack([m[0] for m in out.vote_maps]).cpu().numpy().astype(np.float32)
    selected = np.zeros(maps.shape, bool)
    for i, (m, n) in enumerate(zip(maps, out.layer_counts)):
        flat = torch.from_numpy(m.reshape(-1))
        order = torch.sort(flat, descending=True, stable=True).indices[:n].numpy()
        selected[i].reshape(-1)[order] = True
    gh, gw = maps.shape[1:]
    sy, sx = h / gh, w / gw
    return VoteView([(run.classes[int(c)], float(q)) for c, q in zip(idx, p)], maps, selected,
                    (sy, sx), (sy / 2 - 0.5, sx / 2 - 0.5))


def explain_iter(run_dir: str | Path, image: np.ndarray, top: int = 5, device: str = "cpu",
                 run: Any = None) -> ProgressGen[VoteView]:
    """:func:`explain_image` with the run loaded first (or the given ``run``)."""
    from headless.train.fgvc.build import load_fgvc

    if run is None:
        yield Progress(0, 2, "loading the run")
        run = load_fgvc(run_dir, device)
    yield Progress(1, 2, "votes")
    return explain_image(run, image, top, device)
