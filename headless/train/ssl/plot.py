"""Small PNG charts drawn with Pillow (no plotting library needed): lines and scatter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _frame(w: int, h: int, title: str):  # noqa: ANN202 - PIL objects
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 5), title, fill="black")
    return img, d


def line_plot(path: str | Path, series: dict[str, tuple[list[float], list[float]]],
              title: str, xlabel: str, ylabel: str, logx: bool = True,
              size: tuple[int, int] = (720, 480)) -> Path:
    """``series``: name -> (x, y); x on a log axis by default (labels per class)."""
    w, h = size
    img, d = _frame(w, h, title)
    left, right, top, bottom = 60, w - 170, 30, h - 40
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    fx = np.log10 if logx else (lambda v: np.asarray(v, float))
    x0, x1 = float(fx(xs.min())), float(fx(xs.max()))
    x1 = x1 if x1 > x0 else x0 + 1

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (float(fx(x)) - x0) / (x1 - x0) * (right - left),
                bottom - y / 100.0 * (bottom - top))

    d.rectangle([left, top, right, bottom], outline="black")
    for yv in range(0, 101, 20):
        _, yy = px(xs.min(), yv)
        d.line([left - 4, yy, left, yy], fill="black")
        d.text((left - 30, yy - 6), f"{yv}", fill="black")
    for xv in sorted(set(xs.tolist())):
        xx, _ = px(xv, 0)
        d.line([xx, bottom, xx, bottom + 4], fill="black")
        d.text((xx - 6, bottom + 6), f"{xv:g}", fill="black")
    d.text(((left + right) // 2 - 40, h - 18), xlabel, fill="black")
    d.text((5, top - 2), ylabel, fill="black")
    for i, (name, (x, y)) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        pts = [px(a, b) for a, b in zip(x, y, strict=True)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=c)
        d.text((right + 10, top + 16 * i), name, fill=c)
    img.save(path)
    return Path(path)


def scatter_plot(path: str | Path, xy: np.ndarray, groups: np.ndarray, names: list[str],
                 title: str, size: tuple[int, int] = (640, 640)) -> Path:
    w, h = size
    img, d = _frame(w, h, title)
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    p = 40 + (xy - lo) / span * (np.array([w, h]) - 80)
    for (x, y), g in zip(p, groups, strict=True):
        c = COLOURS[int(g) % len(COLOURS)]
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c)
    for i, name in enumerate(names):
        d.text((w - 150, 20 + 14 * i), name, fill=COLOURS[i % len(COLOURS)])
    img.save(path)
    return Path(path)
