"""Frozen features of image files for k-NN, linear evaluation and the embedding explorer.

A backbone is a :mod:`headless.features.backbones` name with its weights (``official``,
``random``, a file, or a ``dino`` run folder, whose exported teacher is used), or ``resnet50``
with a file. Images go through DINO's evaluation transform (bicubic resize of the short side to
``size * 256 / 224``, centre crop ``size``, ImageNet normalisation). A feature is:

``cls``      the CLS token after the final norm (ViT) / the pooled vector (ResNet): k-NN.
``linear``   the CLS of the last ``n_last_blocks`` blocks, each normed, concatenated, with the
             average of the last block's patch tokens appended when ``avgpool`` (DINO's
             ``eval_linear.py``); a ResNet's pooled vector.

Each image's feature is cached on disk (one ``.npy``), keyed by the file (path, mtime, size),
the backbone, its weights file (path, mtime, size), the mode and the input size.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headless.progress import Progress

EXPORT_FILE = "teacher_backbone.pth"
EXPORT_META = "export.json"


def feature_cache_dir() -> Path:
    root = os.environ.get("DINOSEG_CACHE") or str(Path("~/.dinoseg/cache").expanduser())
    return Path(root) / "ssl_features"


@dataclass
class FeatureModel:
    """A frozen backbone ready for :func:`extract_features`."""

    model: Any
    kind: str  # "vit" or "resnet"
    label: str  # backbone + weights, shown to users and part of the cache key
    key: str
    device: str
    embed_dim: int


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}"


def open_model(backbone: str | None, weights: str | None = "official",
               device: str = "cpu") -> FeatureModel:
    """Load a backbone for feature extraction; a ``dino`` run folder as weights names its own."""
    import torch

    from headless.features.backbones import load_backbone, resolve_device

    device = resolve_device(device)
    wpath = Path(weights).expanduser() if weights not in (None, "official", "random") else None
    if wpath is not None and wpath.is_dir():
        meta_file = wpath / EXPORT_META
        if not meta_file.is_file():
            raise FileNotFoundError(f"{wpath} is a folder without {EXPORT_META}: not a finished "
                                    "dino run (wait for it to complete, or give a weights file)")
        meta = json.loads(meta_file.read_text())
        backbone = backbone if backbone not in (None, "", "auto") else (
            meta.get("features_backbone") or meta["arch"])
        wpath = wpath / EXPORT_FILE
        weights = str(wpath)
    if not backbone or backbone == "auto":
        raise ValueError("name a backbone (for example dinov2_vits14) or give a dino run folder")
    wkey = _file_key(wpath) if wpath is not None else str(weights)
    key = hashlib.sha1(f"{backbone}|{wkey}".encode()).hexdigest()[:16]
    if backbone in ("resnet50", "vit_tiny", "vit_small", "vit_base", "test_vit") or \
            backbone.startswith("vit_"):
        from headless.train.ssl.models import build_backbone

        arch, _, patch = backbone.partition("/")
        net = build_backbone(arch, int(patch or 16))
        if weights not in (None, "random"):
            if wpath is None:
                raise ValueError(f"{backbone} has no official weights: give a file or a run")
            from headless.features.layouts import read_state_dict, unwrap

            sd = unwrap(read_state_dict(wpath))
            if arch == "resnet50":
                sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
            net.load_state_dict(sd, strict=True)
        else:
            torch.manual_seed(0)
            net = build_backbone(arch, int(patch or 16))
        net.eval().requires_grad_(False).to(device)
        kind = "resnet" if arch == "resnet50" else "vit"
        return FeatureModel(net, kind, f"{backbone} ({weights or 'random'})", key, device,
                            int(net.embed_dim))
    bb = load_backbone(backbone, weights=weights or "official", device=device)
    return FeatureModel(bb.model, "vit", f"{backbone} {bb.weights_label}", key, device,
                        int(bb.spec.embed_dim))


def eval_transform(size: int = 224) -> Any:
    from torchvision import transforms as T

    from headless.features.backbones import IMAGENET_MEAN, IMAGENET_STD

    return T.Compose([
        T.Resize(int(round(size * 256 / 224)), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def forward_features(fm: FeatureModel, batch: Any, mode: str = "cls", n_last_blocks: int = 1,
                     avgpool: bool = False) -> Any:
    """(B, D') features of a normalised image batch (see the module docstring)."""
    import torch

    with torch.inference_mode():
        if fm.kind == "resnet" or mode == "cls":
            out = fm.model(batch)
            return out[0] if isinstance(out, tuple) else out
        layers = fm.model.get_intermediate_layers(batch, n_last_blocks,
                                                  return_prefix_tokens=True, norm=True)
        feats = [prefix[:, 0] for _, prefix in layers]
        if avgpool:
            feats.append(layers[-1][0].mean(dim=1))
        return torch.cat(feats, dim=-1)


def extract_features(
    fm: FeatureModel, paths: list[Path], size: int = 224, batch_size: int = 32,
    mode: str = "cls", n_last_blocks: int = 1, avgpool: bool = False,
    cache: Path | None | bool = True,
) -> Generator[Progress, None, np.ndarray]:
    """(N, D') float32 features of ``paths`` in order; cached per image (``cache=False``: off)."""
    import torch
    from PIL import Image

    from headless.train.data.dataset import load_rgb_uint8

    folder = None
    if cache:
        tag = f"{fm.key}|{mode}|{n_last_blocks}|{int(avgpool)}|{size}"
        folder = (cache if isinstance(cache, Path) else feature_cache_dir()) / \
            hashlib.sha1(tag.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
    files = [folder / (hashlib.sha1(_file_key(p).encode()).hexdigest() + ".npy")
             if folder else None for p in paths]
    out: list[np.ndarray | None] = [None] * len(paths)
    todo = []
    for i, f in enumerate(files):
        if f is not None and f.is_file():
            out[i] = np.load(f)
        else:
            todo.append(i)
    tf = eval_transform(size)
    yield Progress(len(paths) - len(todo), len(paths), f"features ({fm.label})")
    for b0 in range(0, len(todo), batch_size):
        idx = todo[b0:b0 + batch_size]
        batch = torch.stack([tf(Image.fromarray(load_rgb_uint8(paths[i]))) for i in idx])
        feats = forward_features(fm, batch.to(fm.device), mode, n_last_blocks, avgpool)
        feats = feats.float().cpu().numpy()
        for j, i in enumerate(idx):
            out[i] = feats[j]
            if files[i] is not None:
                tmp = files[i].with_name(f".{files[i].name}.{os.getpid()}.tmp.npy")
                np.save(tmp, feats[j])
                os.replace(tmp, files[i])
        yield Progress(len(paths) - len(todo) + b0 + len(idx), len(paths), "features")
    if not out:
        return np.zeros((0, fm.embed_dim), np.float32)
    return np.stack(out).astype(np.float32)  # type: ignore[arg-type]
