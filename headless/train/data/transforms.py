"""The training and evaluation transforms of seed 000: a crop, a flip, one colour operation.

The crop is named by ``crop.type``: RandomResizedCrop, or the box- or attention-guided crops of
:mod:`headless.train.crops`; evaluation resizes and takes the centre (the ImageNet convention).
"""

from __future__ import annotations

from typing import Any

from headless.train.data.errors import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def colour_augment(p: float, augmix: bool = False) -> Any:
    """One colour-only operation with probability ``p`` (seed 000): colour jitter, autocontrast,
    equalize, posterize or solarize; geometry is left to the crop. ``augmix`` adds AugMix."""
    from torchvision.transforms import v2

    ops = [
        v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
        v2.RandomAutocontrast(p=1.0),
        v2.RandomEqualize(p=1.0),
        v2.RandomPosterize(bits=4, p=1.0),
        v2.RandomSolarize(threshold=128, p=1.0),
    ]
    steps = [v2.RandomApply([v2.RandomChoice(ops)], p=p)]
    if augmix:
        steps.append(v2.AugMix())
    return v2.Compose(steps)


def make_crop(crop: Any, size: int) -> Any:
    """The random crop named by ``crop.type`` (seed 000): RandomResizedCrop, or the box- or
    attention-guided crops of :mod:`headless.train.crops`."""
    from torchvision.transforms import v2

    if crop.type == "random_resized":
        return v2.RandomResizedCrop(size, scale=tuple(crop.scale), ratio=tuple(crop.ratio),
                                    antialias=True)
    try:
        from headless.train.crops.attention import AttentionDensityCrop
        from headless.train.crops.localized import LocalizedRandomResizedCrop
    except ImportError:
        raise DatasetError(
            f"crop.type {crop.type!r} needs headless.train.crops, which this version lacks"
        ) from None
    if crop.type == "localized":
        return LocalizedRandomResizedCrop(
            size, thr=crop.thr, scale=tuple(crop.scale), ratio=tuple(crop.ratio)
        )
    return AttentionDensityCrop(
        size, temperature=crop.temperature, scale=tuple(crop.scale), ratio=tuple(crop.ratio),
        minmax=crop.min_max, sigma=crop.sigma,
    )


class _DropExtras:
    """Final step: keep what the collate function needs."""

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"image": item["image"], "label": item["label"]}


def train_transform(spec: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The crop of ``spec.crop``, an optional flip and colour operation, then normalisation."""
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = [make_crop(spec.crop, spec.data.image_size)]
    if spec.augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if spec.augment.enabled:
        steps.append(colour_augment(spec.augment.p, spec.augment.augmix))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)),
              _DropExtras()]
    return v2.Compose(steps)


def eval_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """Resize the short side to size * 8/7 and take the centre (the ImageNet convention)."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(int(round(size * 8 / 7)), antialias=True), v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)),
        _DropExtras(),
    ])
