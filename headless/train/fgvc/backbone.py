"""Backbones for fine-grained classification: the project's registry, plus timm's supervised
ViT-B/16 (IELT's backbone) under the name ``vit_b16``.

Registry backbones (DINO, DINOv2 S/B/L/G with or without registers, the tiny test ViTs) load
through :func:`headless.features.backbones.load_backbone` (official / file / random weights,
the official position-embedding resizing). ``vit_b16`` is timm's ``vit_base_patch16_224`` with a
dynamic image size (its position embeddings are resized to any input, e.g. IELT's 448), from a
local timm-layout file (``.safetensors`` / ``.pth``; timm's ``.npz`` too) or random weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPERVISED = {"vit_b16": "vit_base_patch16_224"}
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # timm's supervised ViT-B/16 (augreg) normalisation


class FgvcModelError(ValueError):
    """A backbone that cannot be built as asked (unknown name, weights, sizes)."""


@dataclass
class LoadedTrunk:
    vit: Any  # timm VisionTransformer
    patch_size: int
    num_prefix: int  # CLS + registers
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label: str


def known_backbones() -> list[str]:
    from headless.features.backbones import list_backbones

    return [*list_backbones(), *SUPERVISED]


def patch_size_of(name: str) -> int:
    from headless.features.backbones import REGISTRY

    if name in SUPERVISED:
        return 16
    if name not in REGISTRY:
        raise FgvcModelError(
            f"model.backbone: unknown backbone {name!r}; known: {', '.join(known_backbones())}"
        )
    return REGISTRY[name].patch_size


def check_backbone(name: str, weights: str | None, image_size: int) -> None:
    """Cheap checks before a run: known name, weights at hand, an image size the patch divides."""
    from headless.features.backbones import WeightsError, get_spec, official_weights_path

    patch = patch_size_of(name)
    if image_size % patch:
        k = max(1, round(image_size / patch)) * patch
        raise FgvcModelError(f"data.image_size={image_size} is not a multiple of {name}'s patch "
                             f"size {patch} (use {k})")
    w = weights or "official"
    if w == "random":
        return
    if w == "official":
        if name in SUPERVISED:
            raise WeightsError(f"{name} has no downloadable weights here: set model.weights to "
                               "a timm checkpoint file, or 'random'")
        spec = get_spec(name)
        if spec.family == "test":
            raise WeightsError(f"{name} has no official weights: set model.weights: random")
        official_weights_path(spec)
    elif not Path(w).expanduser().is_file():
        raise WeightsError(f"model.weights: file {w} does not exist")


def load_trunk(name: str, weights: str | None, drop_path: float = 0.0) -> LoadedTrunk:
    """The timm ViT of ``name`` with its weights, trainable, in train mode."""
    import torch

    rng = torch.get_rng_state()
    try:
        if name in SUPERVISED:
            trunk = _load_supervised(name, weights)
        else:
            from headless.features.backbones import load_backbone

            bb = load_backbone(name, weights=weights or "official", device="cpu")
            vit = bb.model
            trunk = LoadedTrunk(vit, bb.patch_size, 1 + bb.spec.num_registers,
                                tuple(bb.spec.mean), tuple(bb.spec.std), bb.weights_label)
    finally:
        torch.set_rng_state(rng)  # loading must not change the run's random stream
    trunk.vit.requires_grad_(True).train()
    if drop_path > 0:
        n = len(trunk.vit.blocks)
        for i, blk in enumerate(trunk.vit.blocks):
            p = drop_path * i / max(n - 1, 1)
            from timm.layers import DropPath

            blk.drop_path1 = DropPath(p) if p > 0 else blk.drop_path1
            blk.drop_path2 = DropPath(p) if p > 0 else blk.drop_path2
    return trunk


def _load_supervised(name: str, weights: str | None) -> LoadedTrunk:
    import timm
    import torch

    arch = SUPERVISED[name]
    w = weights or "random"
    torch.manual_seed(0)
    vit = timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True)
    label = "random (untrained)"
    if w != "random":
        path = Path(w).expanduser()
        if path.suffix == ".npz":
            vit.load_pretrained(str(path))
        else:
            from timm.models.vision_transformer import checkpoint_filter_fn

            from headless.features.backbones import WeightsError, read_state_dict

            sd = checkpoint_filter_fn(read_state_dict(path), vit)
            sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
            missing, unexpected = vit.load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise WeightsError(f"{path} does not fit {arch}: missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]}")
        label = f"file ({path.name})"
    return LoadedTrunk(vit, 16, 1, INCEPTION_MEAN, INCEPTION_MEAN, label)
