"""Hybrid features with the real DINOv2 ViT-S/14 must beat the filter bank on real scribbles.

The baseline is what a user gets with no weights (classical features, the default forest);
hybrid runs with its defaults only (as the dock and ``dinoseg segment --features hybrid`` build
it). Full images, as in the README table: the ViT sees them at twice their size, so this takes
a few minutes on 2 CPU cores (marked slow).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from headless.images import read_image, read_labels
from headless.progress import run
from headless.segment.workflow import FeatureSource, FeatureSpec, Segmenter, SegmentSettings

# Measured through the engine (README, 2026-12-01): hybrid 0.690 / 0.948 against classical + RF
# 0.667 / 0.923 (whole-patch inputs, ViT weight 0.5, C 0.01): the goal is +0.02 on both.
MARGIN = {"0": 0.02, "1": 0.02}


def miou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([((pred == v) & (truth == v)).sum() / ((pred == v) | (truth == v)).sum()
                          for v in np.unique(truth)]))


@functools.lru_cache(maxsize=2)
def _data(root: str, name: str):
    image = read_image(f"{root}/scribbles/{name}.tif")
    return (image, read_labels(f"{root}/scribbles/{name}_labels.tif", image.shape),
            read_labels(f"{root}/scribbles/{name}_ground_truth.tif", image.shape))


def _score(spec: FeatureSpec, image, scribbles, truth, backbone=None) -> float:
    seg = Segmenter(SegmentSettings(features=spec), FeatureSource(spec, backbone=backbone))
    probe = run(seg.train([(image, scribbles)]))
    return miou(run(seg.predict(image, probe, crf=False)).labels, truth)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["0", "1"])
def test_hybrid_defaults_beat_classical_and_the_old_hybrid(shared_data, shared_weights, name):
    from headless.features.backbones import load_backbone

    image, scribbles, truth = _data(str(shared_data), name)
    backbone = load_backbone("dinov2_vits14", weights=str(shared_weights))
    vit = {"backbone": "dinov2_vits14", "weights": str(shared_weights)}
    classical = _score(FeatureSpec("classical"), image, scribbles, truth)
    hybrid = _score(FeatureSpec("hybrid", **vit), image, scribbles, truth, backbone)
    # before issue 10: native input, equal channel weights, nearest upsampling, the forest
    old_spec = FeatureSpec("hybrid", scale=1, vit_weight=1, upsample="nearest-exact", **vit)
    seg = Segmenter(SegmentSettings(features=old_spec, classifier="rf"),
                    FeatureSource(old_spec, backbone=backbone))
    old = miou(run(seg.predict(image, run(seg.train([(image, scribbles)])), crf=False)).labels,
               truth)
    assert hybrid >= classical + MARGIN[name], (hybrid, classical)
    if name == "0":  # on scribbles/1 the old forest (0.944) and the new default (0.945) tie
        assert hybrid > old + 0.005, (hybrid, old)
