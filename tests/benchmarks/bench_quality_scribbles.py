"""Scribble segmentation quality with the real DINOv2 ViT-S/14: mIoU per feature mode and probe.

Run from the repository root (not collected by pytest; several minutes on 2 CPU cores):

    python tests/benchmarks/bench_quality_scribbles.py             # defaults only
    python tests/benchmarks/bench_quality_scribbles.py --before    # + the settings before issue 10

Every figure goes through the engine a user gets (:class:`Segmenter` with a :class:`FeatureSpec`,
as the dock and ``dinoseg segment`` build it) on ``../shared/data/scribbles/{0,1}.tif``, scored
against the dense ground truth with :func:`bench_segment.miou` (class-averaged IoU).
``measure()`` returns the markdown table; ``tests/benchmarks/bench_quality.py`` calls it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_segment import DATA, miou  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = Path(ROOT.parent / "shared" / "weights" / "dinov2_vits14_imgfocus.safetensors")
MODES = ("classical", "bilinear", "hr", "hybrid")
# The defaults before issue 10: the ViT saw the image at its own size, HR-Dv2 copies were
# upsampled nearest-exact, hybrid weighed all channels alike (and its default probe was the forest).
BEFORE = {"scale": 1.0, "vit_weight": 1.0, "upsample": "nearest-exact"}


def _images() -> dict[str, tuple]:
    from headless.images import read_image, read_labels

    out = {}
    for name in ("0", "1"):
        d = DATA / "scribbles"
        image = read_image(d / f"{name}.tif")
        out[name] = (image, read_labels(d / f"{name}_labels.tif", image.shape),
                     read_labels(d / f"{name}_ground_truth.tif", image.shape))
    return out


def scores(mode: str, backbone, images: dict, **options) -> dict[tuple[str, str], float]:
    """``{(image, classifier): mIoU}`` for one feature mode; features computed once per image."""
    from headless.progress import run
    from headless.segment.workflow.feature_source import FeatureSource, FeatureSpec
    from headless.segment.workflow.segmenter import Segmenter, SegmentSettings

    vit = {} if mode == "classical" else {"backbone": "dinov2_vits14", "weights": str(WEIGHTS)}
    if mode == "classical":
        options = {}
    else:
        drop = {"bilinear": ("vit_weight", "upsample"), "hr": ("vit_weight",)}.get(mode, ())
        options = {k: v for k, v in options.items() if k not in drop}
    spec = FeatureSpec(mode=mode, **vit, **options)
    source = FeatureSource(spec, backbone=None if mode == "classical" else backbone)
    out = {}
    for name, (image, scribbles, truth) in images.items():
        for clf in ("rf", "linear"):
            seg = Segmenter(SegmentSettings(features=spec, classifier=clf), source)
            probe = run(seg.train([(image, scribbles)]))
            out[name, clf] = miou(run(seg.predict(image, probe, crf=None)).labels, truth)
        source.clear()
    return out


def measure(before: bool = False) -> str:
    """Markdown table: mIoU per feature mode and classifier on scribbles/0 and /1 (real weights).

    ``before`` adds rows with the settings before issue 10 (ViT at native size, equal weights).
    """
    from headless.features.backbones import load_backbone
    from headless.segment.workflow.segmenter import DEFAULT_CLASSIFIER

    if not WEIGHTS.exists() or not DATA.exists():
        return f"(skipped: needs {WEIGHTS} and {DATA})"
    backbone = load_backbone("dinov2_vits14", weights=str(WEIGHTS))
    images = _images()
    settings = [("defaults", {})] + ([("before issue 10", BEFORE)] if before else [])
    lines = ["| features | settings | scribbles/0 RF | scribbles/0 linear | scribbles/1 RF | "
             "scribbles/1 linear | default probe |", "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        for label, opts in settings:
            if mode == "classical" and label != "defaults":
                continue
            s = scores(mode, backbone, images, **opts)
            default = DEFAULT_CLASSIFIER[mode] if label == "defaults" else (
                "rf" if mode == "hybrid" else DEFAULT_CLASSIFIER[mode])
            lines.append(f"| {mode} | {label} | " + " | ".join(
                f"{s[n, c]:.3f}" for n in ("0", "1") for c in ("rf", "linear"))
                + f" | {default} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", action="store_true", help="also the settings before issue 10")
    args = ap.parse_args()
    print(measure(before=args.before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
