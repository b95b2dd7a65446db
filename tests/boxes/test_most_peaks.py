"""MOST's ``expansion="attention"`` (DINOv2 preset): one box per prominent attention peak.

Planted cases: two objects of the same kind (identical features, as raccoons are on DINOv2's
centred keys), each with its own attention bump. Apart or touching, each gets its box; one object
with two close maxima on it (eyes, ears) gets one; a faint bump on the background none. The
reference ``expansion="pools"`` ignores the new parameters.
"""

from __future__ import annotations

import numpy as np
import pytest

from headless.boxes import Box
from headless.boxes.localize import localize, resolved_settings
from headless.boxes.localize.handling import DINOV2, centre_tokens
from headless.boxes.localize.most import most
from headless.boxes.localize.most_peaks import attention_peaks
from headless.boxes.metrics import iou as box_iou

P = 16
GRID = (20, 20)
IMAGE = (320, 320)


def block_box(block):
    r0, r1, c0, c1 = block
    return (float(P * c0), float(P * r0), float(P * c1), float(P * r1))


def _iou(a, b) -> float:
    """IoU of two ``xyxy`` tuples (the engine's)."""
    return box_iou(Box(*a), Box(*b))


def _scene(blocks, bumps, seed=3):
    """Centred tokens with ``blocks`` of one object kind, and an attention map with ``bumps``."""
    rng = np.random.default_rng(seed)
    obj, background = np.linalg.qr(rng.normal(size=(32, 2)))[0].T
    k = np.tile(background, (*GRID, 1))
    for r0, r1, c0, c1 in blocks:
        k[r0:r1, c0:c1] = obj
    k = k + 0.1 * rng.normal(size=k.shape)
    k = centre_tokens(k.reshape(GRID[0] * GRID[1], -1) + 2.0, "mean")
    rr, cc = np.mgrid[: GRID[0], : GRID[1]]
    att = np.full(GRID, 1e-3)
    for r, c, height, width in bumps:
        att += height * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * width**2))
    return k, att


def _boxes(k, att, **kw):
    return [b.xyxy() for b in most(k, GRID, P, IMAGE, expansion="attention", attention=att, **kw)]


@pytest.mark.parametrize("blocks", [((3, 9, 2, 8), (11, 17, 11, 17)),  # apart
                                    ((6, 12, 2, 9), (6, 12, 9, 16))])  # touching
def test_each_attended_object_of_the_same_kind_gets_its_box(blocks):
    bumps = [((r0 + r1) / 2, (c0 + c1) / 2, h, 1.5) for (r0, r1, c0, c1), h in
             zip(blocks, (1.0, 0.8))]
    k, att = _scene(blocks, bumps)
    boxes = _boxes(k, att)
    assert len(boxes) == 2
    if blocks[0][3] < blocks[1][2]:
        assert boxes == [block_box(b) for b in blocks]  # brighter object first
    else:  # touching: the watershed line between the bumps splits them (+- a patch)
        assert all(_iou(b, block_box(t)) > 0.8 for b, t in zip(boxes, blocks))


def test_close_maxima_on_one_object_and_faint_background_bumps_give_one_box():
    block = (5, 13, 4, 14)
    k, att = _scene([block], [(9, 6.5, 1.0, 1.2), (9, 11.5, 0.9, 1.2), (17, 17, 0.15, 1.0)])
    assert _boxes(k, att) == [block_box(block)]
    # with no prominence every maximum counts: the object is cut in two
    assert len(_boxes(k, att, peak_prominence=0.0)) == 2


def test_min_mass_drops_a_weakly_attended_object():
    blocks = ((3, 9, 2, 8), (11, 17, 11, 17))
    k, att = _scene(blocks, [(6, 5, 1.0, 1.5), (14, 14, 0.6, 1.5)])
    assert len(_boxes(k, att, min_mass=0.0)) == 2
    assert _boxes(k, att, min_mass=0.8) == [block_box(blocks[0])]  # B holds ~0.6 of A


def test_scores_are_attention_shares_and_peaks_are_sorted():
    blocks = ((3, 9, 2, 8), (11, 17, 11, 17))
    k, att = _scene(blocks, [(6, 5, 0.7, 1.5), (14, 14, 1.0, 1.5)])
    boxes = most(k, GRID, P, IMAGE, expansion="attention", attention=att)
    assert [b.xyxy() for b in boxes] == [block_box(blocks[1]), block_box(blocks[0])]
    assert 1.0 >= boxes[0].score > boxes[1].score > 0.0
    peaks = attention_peaks(att, 0.4, np.ones(GRID, bool))
    assert peaks.tolist() == [[14, 14], [6, 5]]
    assert most(k, GRID, P, IMAGE, expansion="attention", attention=np.zeros(GRID)) == []


def test_the_reference_pools_ignore_the_new_parameters():
    blocks = ((3, 9, 2, 8), (11, 17, 11, 17))
    k, att = _scene(blocks, [(6, 5, 1.0, 1.5)])
    ref = [b.xyxy() for b in most(k, GRID, P, IMAGE)]
    same = [b.xyxy() for b in most(k, GRID, P, IMAGE, expansion="pools", prior=0.0, opening=3,
                                   peak_prominence=0.9, min_mass=1.0, mask_threshold=0.9)]
    assert ref == same and len(ref) == 2


def test_option_errors_name_the_problem():
    k, att = _scene([(3, 9, 2, 8)], [(6, 5, 1.0, 1.5)])
    with pytest.raises(ValueError, match="expansion must be"):
        most(k, GRID, P, IMAGE, expansion="peaks", attention=att)
    with pytest.raises(ValueError, match="attention"):
        most(k, GRID, P, IMAGE, expansion="attention")
    with pytest.raises(ValueError, match="opening must be"):
        most(k, GRID, P, IMAGE, expansion="attention", attention=att, opening=0.5)
    with pytest.raises(ValueError, match="did you mean 'min_mass'"):
        localize("most", object(), min_mas=0.2)


def test_dinov2_preset_records_the_peak_settings_and_dino_keeps_the_reference():
    p = resolved_settings("most", "dinov2")["params"]
    assert (p["expansion"], p["peak_prominence"], p["peak_sigma"], p["min_mass"]) == (
        "attention", 0.4, 1.0, 0.3)
    assert (p["mask_threshold"], p["prior"], p["prior_sigma"], p["opening"]) == (
        0.15, 0.5, 1.0, 1)
    assert DINOV2.method_params["most"]["expansion"] == "attention"
    ref = resolved_settings("most", "dino")["params"]
    assert not {"expansion", "peak_prominence", "min_mass", "prior"} & set(ref)
