"""LOST's DINOv2 options: the attention-weighted expansion, the attention prior and the opening.

Planted case: two objects of the same kind (identical features) joined by a one-patch bridge,
the attention on one of them, as a raccoon held by a person on DINOv2's centred features. The
reference-style mask runs over the bridge into the second object; the prior and the opening
each keep the box on the attended one.
"""

from __future__ import annotations

import numpy as np
import pytest

from headless.boxes import Box
from headless.boxes.localize import localize, resolved_settings
from headless.boxes.localize._grid import open_keeping_seed
from headless.boxes.localize.handling import DINOV2, attention_prior, centre_tokens
from headless.boxes.localize.lost import attention_expansion, lost
from headless.boxes.metrics import iou as box_iou

P = 16
GRID = (20, 20)
IMAGE = (320, 320)
A = (3, 9, 2, 7)  # attended object
B = (3, 9, 12, 17)  # same kind, not attended, joined to A by a bridge on row 5


def block_box(block):
    r0, r1, c0, c1 = block
    return (float(P * c0), float(P * r0), float(P * c1), float(P * r1))


def iou(a, b) -> float:
    """IoU of two ``xyxy`` tuples (the engine's)."""
    return box_iou(Box(*a), Box(*b))


def _twins() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    obj, background = np.linalg.qr(rng.normal(size=(32, 2)))[0].T
    k = np.tile(background, (20, 20, 1))
    for r0, r1, c0, c1 in (A, B):
        k[r0:r1, c0:c1] = obj
    k[5, 7:12] = obj
    k = k + 0.1 * rng.normal(size=k.shape)
    k = centre_tokens(k.reshape(400, -1) + 2.0, "mean")
    att = np.full(GRID, 1e-3)
    att[4:8, 3:6] = 1.0
    return k, att


def _lost(k, att, **kw):
    (box,) = lost(k, GRID, P, IMAGE, seed="attention", expansion="attention", attention=att, **kw)
    return box.xyxy()


def test_the_bridge_leaks_without_prior_or_opening():
    k, att = _twins()
    assert _lost(k, att)[2] == block_box(B)[2]  # the box runs over the bridge into B
    (old,) = lost(k, GRID, P, IMAGE, seed="attention", attention=att, k=50, mask_threshold=0.1)
    assert old.xyxy()[2] == block_box(B)[2]


@pytest.mark.parametrize("kw", [{"opening": 1}, {"prior": 0.5, "mask_threshold": 0.15},
                                {"prior": 0.5, "mask_threshold": 0.15, "opening": 1}])
def test_prior_and_opening_keep_the_box_on_the_attended_object(kw):
    k, att = _twins()
    box = _lost(k, att, **kw)
    assert box[2] < block_box(B)[0]
    assert iou(box, block_box(A)) >= 0.8


def test_attention_expansion_is_the_cosine_to_the_weighted_prototype():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    a = rng.random(30)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    proto = (a[:, None] * unit).sum(0) / a.sum()
    np.testing.assert_allclose(attention_expansion(x, a), unit @ proto, rtol=1e-10)
    assert not attention_expansion(x, np.zeros(30)).any()


def test_attention_prior_is_a_smoothed_map_scaled_to_one():
    a = np.zeros((9, 9))
    a[4, 4] = 3.0
    p = attention_prior(a, 1.0)
    assert p.max() == pytest.approx(1.0) and p[4, 4] == p.max()
    assert 0 < p[4, 6] < p[4, 5] < 1 and p[0, 0] < 1e-3
    np.testing.assert_allclose(attention_prior(a, 0.0), a / 3.0)
    assert not attention_prior(np.zeros((3, 3))).any()


def test_opening_cuts_a_spur_but_never_erases_the_seed():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 1:4] = True
    mask[3, 4:8] = True  # a one-patch-wide spur
    opened = open_keeping_seed(mask, 2 * 8 + 2, 1)
    assert not opened[3, 5:].any() and opened[2:6, 1:4].sum() == 9  # the corners go
    assert not (opened & ~mask).any()
    thin = np.zeros((8, 8), bool)
    thin[4, :] = True  # a thin object the opening would erase: keep it
    assert open_keeping_seed(thin, 4 * 8 + 3, 1) is thin
    assert open_keeping_seed(mask, 0, 0) is mask


def test_option_errors_name_the_problem():
    k, att = _twins()
    with pytest.raises(ValueError, match="expansion must be"):
        lost(k, GRID, P, IMAGE, expansion="topk")
    with pytest.raises(ValueError, match="opening must be"):
        lost(k, GRID, P, IMAGE, opening=1.5)
    with pytest.raises(ValueError, match="attention"):
        lost(k, GRID, P, IMAGE, prior=0.5)
    with pytest.raises(ValueError, match="did you mean 'prior'"):
        localize("lost", object(), priors=1.0)


def test_dinov2_preset_records_the_new_choices_and_dino_keeps_the_reference():
    s = resolved_settings("lost", "dinov2")
    assert (s["which"], s["centre"]) == ("k", "mean")
    p = s["params"]
    assert (p["seed"], p["expansion"], p["opening"]) == ("attention", "attention", 1)
    assert p["prior"] == 0.5 and p["prior_sigma"] == 1.0 and p["mask_threshold"] == 0.15
    assert DINOV2.method_params["lost"]["expansion"] == "attention"
    ref = resolved_settings("lost", "dino")["params"]
    assert "expansion" not in ref and "prior" not in ref and "opening" not in ref
