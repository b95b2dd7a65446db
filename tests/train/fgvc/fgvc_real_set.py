"""A small real two-class set from the raccoon photos: the boxed raccoon vs. a same-sized
background window of the same photo (no overlap with any box), as an ImageFolder."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image


def _boxes(xml: Path) -> list[tuple[int, int, int, int]]:
    root = ET.parse(xml).getroot()
    out = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        out.append(tuple(int(float(b.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")))
    return out


def make_raccoon_vs_background(voc: Path, root: Path, n_train: int = 24, n_test: int = 16,
                               size: int = 112) -> Path:
    rng = np.random.default_rng(0)
    made = 0
    need = n_train + n_test
    for xml in sorted((voc / "annotations").glob("*.xml")):
        if made >= need:
            break
        img_path = voc / "images" / (xml.stem + ".jpg")
        if not img_path.is_file():
            continue
        boxes = _boxes(xml)
        if len(boxes) != 1:
            continue
        x0, y0, x1, y1 = boxes[0]
        img = Image.open(img_path).convert("RGB")
        w, h = img.size
        bw, bh = max(32, (x1 - x0) // 2), max(32, (y1 - y0) // 2)
        bg = None
        for _ in range(50):  # a window of half the box size that misses the box
            cx, cy = int(rng.integers(0, max(1, w - bw))), int(rng.integers(0, max(1, h - bh)))
            if cx + bw <= x0 or cx >= x1 or cy + bh <= y0 or cy >= y1:
                bg = (cx, cy, cx + bw, cy + bh)
                break
        if bg is None:
            continue
        split = "train" if made < n_train else "test"
        for name, box in (("raccoon", (x0, y0, x1, y1)), ("background", bg)):
            out = root / split / name / f"{xml.stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            img.crop(box).resize((size, size)).save(out)
        made += 1
    return root
