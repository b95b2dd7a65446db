"""A planted classification dataset: coloured shapes on noise, with their exact boxes.

Used by tests, benchmarks and demos where real data would be too slow or absent. Class ``k``
is one shape in one colour (red disc, green square, blue triangle, ...), placed at a random
position and size on uniform noise, so a classifier can learn it in a few steps and the box of
every object is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from headless.boxes import Box

CLASSES = ("red_disc", "green_square", "blue_triangle", "yellow_cross", "cyan_ring")
_COLOURS = ((230, 30, 30), (30, 200, 40), (40, 60, 240), (230, 220, 30), (30, 220, 230))


def _mask(kind: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    if kind == 0:
        return ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1.0
    if kind == 1:
        return np.ones((h, w), bool)
    if kind == 2:  # apex at the top, base at the bottom
        half = (yy + 1) / h * (w / 2)
        return np.abs(xx - cx) <= half
    if kind == 3:
        return (np.abs(xx - cx) <= w / 6) | (np.abs(yy - cy) <= h / 6)
    r = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2
    return (r <= 1.0) & (r >= 0.4)


def make_shapes_dataset(
    folder: str | Path,
    n_per_class: int = 12,
    n_classes: int = 3,
    size: int = 48,
    seed: int = 0,
    noise: int = 90,
) -> dict[str, list[Box]]:
    """Write ``folder/<class>/<class>_NNN.png`` and ``folder/boxes.json``; return the boxes.

    Box keys are paths relative to ``folder`` (``red_disc/red_disc_000.png``); boxes are exact
    (x1/y1 exclusive) and labelled with the class name.
    """
    import imageio.v3 as iio

    if not 2 <= n_classes <= len(CLASSES):
        raise ValueError(f"n_classes must be 2..{len(CLASSES)}, got {n_classes}")
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    boxes: dict[str, list[Box]] = {}
    for k in range(n_classes):
        name = CLASSES[k]
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, noise, size=(size, size, 3), dtype=np.uint8)
            bh = int(rng.integers(size // 3, size * 2 // 3 + 1))
            bw = int(rng.integers(size // 3, size * 2 // 3 + 1))
            y0 = int(rng.integers(0, size - bh + 1))
            x0 = int(rng.integers(0, size - bw + 1))
            m = _mask(k, bh, bw)
            patch = img[y0:y0 + bh, x0:x0 + bw]
            patch[m] = _COLOURS[k]
            rel = f"{name}/{name}_{i:03d}.png"
            iio.imwrite(folder / rel, img)
            boxes[rel] = [Box(x0, y0, x0 + bw, y0 + bh, label=name, source="gt")]
    (folder / "boxes.json").write_text(
        json.dumps({k: [b.to_dict() for b in v] for k, v in boxes.items()}, indent=1),
        encoding="utf-8",
    )
    return boxes
