"""A planted fine-grained dataset: classes that differ only in one small patch.

Every image is low-contrast noise with two distractor squares; one ``cell`` x ``cell`` patch,
aligned to the patch grid at a random position, holds a 2 x 2 arrangement of the same two
colours, and the arrangement is the class (rotations / swaps of one another). Nothing else
differs between classes, so a model must find and read that patch: the setting where IELT's
token selection matters. Written as an ImageFolder with ``train/`` and ``test/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

A, B = (230, 40, 40), (40, 80, 230)
#: the class patterns: which quadrants (tl, tr, bl, br) take colour A
PATTERNS = ((1, 0, 0, 1), (0, 1, 1, 0), (1, 1, 0, 0), (0, 0, 1, 1), (1, 0, 1, 0), (0, 1, 0, 1))


def planted_image(label: int, rng: np.random.Generator, size: int = 64, cell: int = 16
                  ) -> np.ndarray:
    img = rng.integers(100, 156, (size, size, 3)).astype(np.uint8)
    g = size // cell
    spots = rng.permutation(g * g)[:3]
    half = cell // 2
    for j, spot in enumerate(spots):
        y, x = (spot // g) * cell, (spot % g) * cell
        if j == 0:
            for q, on in enumerate(PATTERNS[label]):
                qy, qx = y + (q // 2) * half, x + (q % 2) * half
                img[qy:qy + half, qx:qx + half] = A if on else B
        else:  # distractor: one colour, same size
            img[y:y + cell, x:x + cell] = A if j == 1 else B
    return img


def make_planted_fgvc(root: str | Path, n_classes: int = 4, n_train: int = 24, n_test: int = 8,
                      size: int = 64, cell: int = 16, seed: int = 0) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png``; returns ``root``."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for k in range(n_classes):
            folder = root / split / f"pattern_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(planted_image(k, rng, size, cell)).save(folder / f"{i:03d}.png")
    return root
