"""MOST's DINOv2 preset on real photos with two raccoons (real DINOv2 ViT-S/14, VOC truth).

The box counting of the earlier preset found one of the two raccoons (or none) on these photos;
one box per prominent attention peak finds both, and keeps one box on a single-raccoon photo.
Skips where ../shared is absent (fails under CI).
"""

from __future__ import annotations

import pytest

from headless.boxes import read_boxes
from headless.boxes.localize import localize
from headless.boxes.metrics import iou

#: Two raccoons each (even-index photos, where the settings were chosen).
PAIRS = ("raccoon-117.jpg", "raccoon-148.jpg")
#: One raccoon covering about a third of the photo.
SINGLE = "raccoon-101.jpg"
#: MOST's earlier DINOv2 settings (box counting on the centred keys).
OLD_MOST = {"expansion": "pools"}

_CACHE: dict[str, tuple] = {}


@pytest.fixture
def real(shared_weights, shared_data):
    if "real" not in _CACHE:
        from headless.features.backbones import load_backbone
        from headless.features.forward import extract_image
        from headless.images import read_image

        root = shared_data / "raccoon_voc"
        backbone = load_backbone("dinov2_vits14", weights=str(shared_weights), device="cpu")
        feats = {n: extract_image(backbone, read_image(root / "images" / n), size=448,
                                  autocast=False) for n in (*PAIRS, SINGLE)}
        _CACHE["real"] = feats, read_boxes(root / "annotations")
    return _CACHE["real"]


def _found(boxes, truth) -> int:
    return sum(any(iou(b, g) >= 0.5 for b in boxes) for g in truth)


@pytest.mark.parametrize("name", PAIRS)
def test_most_finds_both_raccoons(real, name):
    feats, truth = real
    f, gts = feats[name], truth.boxes[name]
    assert len(gts) == 2
    boxes = localize("most", f, orig_hw=f.orig_hw)  # auto: the DINOv2 preset
    assert _found(boxes, gts) == 2 and len(boxes) == 2
    assert all(b.source == "most" and 0 < b.score <= 1 for b in boxes)
    old = localize("most", f, orig_hw=f.orig_hw, **OLD_MOST)
    assert _found(old, gts) < 2


def test_most_keeps_one_box_on_a_single_raccoon(real):
    feats, truth = real
    f = feats[SINGLE]
    (gt,) = truth.boxes[SINGLE]
    boxes = localize("most", f, orig_hw=f.orig_hw)
    assert len(boxes) == 1 and iou(boxes[0], gt) >= 0.5
