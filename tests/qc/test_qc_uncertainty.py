"""The uncertainty of boxes, SAM masks and class probabilities, on small planted arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from headless.boxes.types import Box
from headless.qc.uncertainty import (
    BOX_WEIGHTS,
    NO_SIGNAL,
    attention_mass,
    best_iou,
    box_uncertainty,
    probability_uncertainty,
    sam_uncertainty,
)

SIZE = (20, 20)  # (width, height)
MAIN = [Box(0, 0, 10, 10, score=0.8, source="lost")]


def test_no_box_is_the_most_uncertain():
    out = box_uncertainty([], SIZE, attention=np.ones((20, 20)),
                          other_boxes={"tokencut": [Box(0, 0, 5, 5)]})
    assert out["uncertainty"] == 1.0
    assert out["reasons"] == ["no object found"]
    assert out["signals"]["n_boxes"] == 0
    json.dumps(out)  # saved as it is


def test_box_signals_and_their_weighted_mean():
    att = np.ones((20, 20))  # 100 of 400 pixels in the box
    other = {"tokencut": [Box(0, 0, 10, 20)]}  # IoU 100 / 200
    out = box_uncertainty(MAIN, SIZE, attention=att, other_boxes=other)
    s = out["signals"]
    assert s["score"] == pytest.approx(0.8)
    assert s["agreement"] == pytest.approx(0.5)
    assert s["attention_mass"] == pytest.approx(0.25)
    expected = (0.5 * (1 - 0.5) + 0.3 * (1 - 0.25) + 0.2 * (1 - 0.8)) / 1.0
    assert out["uncertainty"] == pytest.approx(expected)  # 0.515
    assert "little attention in box (25%)" in out["reasons"]
    assert not any("disagree" in r for r in out["reasons"])  # IoU 0.5 is not < 0.5
    json.dumps(out)


def test_missing_signals_are_left_out_not_counted_as_zero():
    assert box_uncertainty(MAIN, SIZE)["uncertainty"] == pytest.approx(0.2)  # score only
    att = np.zeros((20, 20))
    att[:10, :10] = 3.0  # all the mass in the box
    no_score = [Box(0, 0, 10, 10)]
    out = box_uncertainty(no_score, SIZE, attention=att)
    assert out["signals"]["score"] is None and out["uncertainty"] == pytest.approx(0.0)
    # attention and agreement, no score: weights 0.3 and 0.5 renormalised
    out = box_uncertainty(no_score, SIZE, attention=att,
                          other_boxes={"most": [Box(10, 10, 20, 20)]})
    w_a, w_m = BOX_WEIGHTS["agreement"], BOX_WEIGHTS["attention_mass"]
    assert out["uncertainty"] == pytest.approx((w_a * 1.0 + w_m * 0.0) / (w_a + w_m))
    assert "methods disagree (IoU 0.00)" in out["reasons"]
    # a map without mass gives no signal; no signal at all is halfway
    out = box_uncertainty(no_score, SIZE, attention=np.zeros((20, 20)))
    assert out["signals"]["attention_mass"] is None
    assert out["uncertainty"] == NO_SIGNAL and out["reasons"] == ["no confidence signal"]


def test_agreement_is_the_mean_over_methods_of_the_best_iou():
    other = {"tokencut": [Box(50, 50, 60, 60), Box(0, 0, 10, 10)],  # best match: 1.0
             "most": [Box(0, 0, 10, 5)],  # 0.5
             "dino": []}  # found nothing: 0
    out = box_uncertainty(MAIN, (100, 100), other_boxes=other)
    assert out["signals"]["agreement_by_method"] == {"tokencut": 1.0, "most": 0.5, "dino": 0.0}
    assert out["signals"]["agreement"] == pytest.approx(0.5)
    assert "no object for dino" in out["reasons"]
    assert best_iou(MAIN, []) == 0.0
    assert best_iou([Box(0, 0, 4, 4)], [Box(2, 2, 6, 6)]) == pytest.approx(4 / 28)


def test_attention_mass_on_a_patch_grid_and_in_a_union():
    grid = np.array([[1.0, 0.0], [0.0, 3.0]])  # 2x2 patches over a 20x20 image
    assert attention_mass([Box(0, 0, 10, 10)], SIZE, grid) == pytest.approx(0.25)
    assert attention_mass([Box(0, 0, 10, 10), Box(10, 10, 20, 20)], SIZE,
                          grid) == pytest.approx(1.0)
    # overlapping boxes count each pixel once
    att = np.ones((20, 20))
    assert attention_mass([Box(0, 0, 10, 10), Box(5, 5, 10, 10)], SIZE,
                          att) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="2D"):
        attention_mass(MAIN, SIZE, np.ones((3, 20, 20)))


def test_sam_uncertainty_area_weighted():
    out = sam_uncertainty([0.9, 0.5], [0.95, 0.99], areas=[300, 100])
    # doubts 1 - min: 0.1 and 0.5, weighted by area
    assert out["uncertainty"] == pytest.approx((300 * 0.1 + 100 * 0.5) / 400)
    assert sam_uncertainty([0.9, 0.5], [0.95, 0.99])["uncertainty"] == pytest.approx(0.3)
    assert out["signals"]["min_predicted_iou"] == pytest.approx(0.5)
    assert out["signals"]["predicted_iou"] == pytest.approx((270 + 50) / 400)
    assert "low predicted IoU (0.80)" in out["reasons"]
    good = sam_uncertainty([0.97], [0.98])
    assert good["uncertainty"] == pytest.approx(0.03) and good["reasons"] == []
    empty = sam_uncertainty([], [])
    assert empty["uncertainty"] == 1.0 and empty["reasons"] == ["no mask"]
    with pytest.raises(ValueError, match="stability"):
        sam_uncertainty([0.9], [0.9, 0.8])
    json.dumps(out)


def test_probability_entropy_and_margin_exact():
    c, h, w = 4, 3, 5
    uniform = np.full((c, h, w), 1.0 / c)
    out = probability_uncertainty(uniform)
    assert out["uncertainty"] == pytest.approx(1.0)
    assert out["signals"]["entropy"] == pytest.approx(1.0)
    assert out["signals"]["margin"] == pytest.approx(0.0)
    assert out["signals"]["tied_fraction"] == 1.0
    onehot = np.zeros((c, h, w))
    onehot[2] = 1.0
    out = probability_uncertainty(onehot)
    assert out["uncertainty"] == 0.0 and out["signals"]["margin"] == 1.0
    assert out["reasons"] == []
    # one pixel (0.7, 0.2, 0.1)
    p = np.array([0.7, 0.2, 0.1]).reshape(3, 1, 1)
    out = probability_uncertainty(p)
    ent = -sum(x * math.log(x) for x in (0.7, 0.2, 0.1)) / math.log(3)
    assert out["uncertainty"] == pytest.approx(ent, abs=1e-6)
    assert out["signals"]["margin"] == pytest.approx(0.5)


def test_probability_mask_selects_the_pixels():
    p = np.zeros((2, 1, 2))
    p[:, 0, 0] = (0.5, 0.5)  # tied
    p[:, 0, 1] = (0.0, 1.0)  # certain
    assert probability_uncertainty(p)["uncertainty"] == pytest.approx(0.5)
    assert probability_uncertainty(p)["signals"]["margin"] == pytest.approx(0.5)
    mask = np.array([[False, True]])
    assert probability_uncertainty(p, mask)["uncertainty"] == 0.0
    assert probability_uncertainty(p, ~mask)["uncertainty"] == pytest.approx(1.0)
    none = probability_uncertainty(p, np.zeros((1, 2), bool))
    assert none["uncertainty"] == 1.0 and none["signals"]["n_pixels"] == 0
    with pytest.raises(ValueError, match="mask shape"):
        probability_uncertainty(p, np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        probability_uncertainty(np.ones((2, 2)))
    assert probability_uncertainty(np.ones((1, 2, 2)))["uncertainty"] == 0.0  # one class
