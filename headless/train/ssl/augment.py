"""DINO's multi-crop augmentation (``DataAugmentationDINO`` of facebookresearch/dino).

Two global crops (``global_size``, scale ``global_scale``) and ``n_local`` local crops
(``local_size``, ``local_scale``), bicubic; each: horizontal flip, colour jitter (0.4, 0.4, 0.2,
0.1) with p 0.8, greyscale with p 0.2; Gaussian blur (radius U(0.1, 2)) with p 1.0 on the first
global crop, 0.1 on the second and 0.5 on the locals; solarisation with p 0.2 on the second
global crop only; then ImageNet normalisation. Randomness comes from Python's ``random`` and
torch's global RNG, which the dataset seeds per (seed, epoch, index) for exact resume.
"""

from __future__ import annotations

import random
from typing import Any

from headless.features.backbones import IMAGENET_MEAN, IMAGENET_STD


class GaussianBlur:
    """PIL Gaussian blur with probability ``p`` and radius ``U(radius_min, radius_max)``."""

    def __init__(self, p: float = 0.5, radius_min: float = 0.1, radius_max: float = 2.0) -> None:
        self.prob, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img: Any) -> Any:
        from PIL import ImageFilter

        if random.random() > self.prob:
            return img
        return img.filter(ImageFilter.GaussianBlur(
            radius=random.uniform(self.radius_min, self.radius_max)))


class Solarization:
    """PIL solarisation with probability ``p``."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, img: Any) -> Any:
        from PIL import ImageOps

        return ImageOps.solarize(img) if random.random() < self.p else img


class MultiCrop:
    """PIL image -> list of ``2 + n_local`` normalised tensors (global crops first)."""

    def __init__(self, global_scale: tuple[float, float] = (0.4, 1.0),
                 local_scale: tuple[float, float] = (0.05, 0.4), n_local: int = 8,
                 global_size: int = 224, local_size: int = 96) -> None:
        from torchvision import transforms as T

        bicubic = T.InterpolationMode.BICUBIC
        flip_and_color_jitter = T.Compose([
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2,
                                         hue=0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ])
        normalize = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self.n_local = n_local
        self.global_size, self.local_size = global_size, local_size
        self.global1 = T.Compose([
            T.RandomResizedCrop(global_size, scale=global_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(1.0), normalize,
        ])
        self.global2 = T.Compose([
            T.RandomResizedCrop(global_size, scale=global_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(0.1), Solarization(0.2), normalize,
        ])
        self.local = T.Compose([
            T.RandomResizedCrop(local_size, scale=local_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(p=0.5), normalize,
        ])

    def __call__(self, image: Any) -> list[Any]:
        crops = [self.global1(image), self.global2(image)]
        crops += [self.local(image) for _ in range(self.n_local)]
        return crops


class PretextDataset:
    """Unlabelled images; key ``(epoch, index)`` -> the crops, seeded per (seed, epoch, index)."""

    def __init__(self, paths: list[Any], transform: MultiCrop, seed: int = 0) -> None:
        self.paths, self.transform, self.seed = list(paths), transform, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[list[Any], int]:
        from PIL import Image

        from headless.train.data.dataset import load_rgb_uint8, sample_seed, seeded

        epoch, index = key if isinstance(key, tuple) else (-1, int(key))
        image = Image.fromarray(load_rgb_uint8(self.paths[index]))
        with seeded(sample_seed(self.seed, epoch + 1, index)):
            crops = self.transform(image)
        return crops, 0
