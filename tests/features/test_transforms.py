"""Invertible transforms for HR-Dv2: exact inverses, reference shift order, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headless.features import transforms as T
from headless.features.transforms import TransformError


def _rand(h: int, w: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_shift_directions_follow_reference_raster_order():
    # tldr-group/HR-Dv2 compute_shift_directions: 3x3 raster order, Neumann = odd indices
    raster = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert list(T.shift_directions(8)) == [d for i, d in enumerate(raster) if i != 4]
    assert list(T.shift_directions(4)) == [d for i, d in enumerate(raster) if i % 2 == 1]
    assert T.shift_directions(0) == ()
    with pytest.raises(TransformError, match="4 .*or 8"):
        T.shift_directions(6)


def test_shift_transform_sets_identity_first_then_distances_outer():
    ts = T.shift_transforms(8, (1, 2))
    assert len(ts) == 17  # the authors' Moore, d in {1, 2} setting
    assert ts[0].name == "identity"
    assert [t.shift for t in ts[1:9]] == list(T.MOORE)
    assert [t.shift for t in ts[9:]] == [(2 * dy, 2 * dx) for dy, dx in T.MOORE]
    assert len(T.shift_transforms(4, 1)) == 5
    assert len(T.shift_transforms(0)) == 1
    with pytest.raises(TransformError, match="positive"):
        T.shift_transforms(4, 0)


def test_roll_is_periodic_numpy_roll_and_inverts_exactly():
    x = _rand(9, 13)
    t = T.roll(2, -3)
    np.testing.assert_array_equal(t.forward(x).numpy(), np.roll(x.numpy(), (2, -3), axis=(-2, -1)))
    assert torch.equal(t.inverse(t.forward(x)), x)
    # periodic: rolling a full period is the identity
    assert torch.equal(T.roll(9, 13).forward(x), x)


@pytest.mark.parametrize("hw", [(12, 12), (10, 17)])
def test_every_builtin_transform_inverts_exactly(hw):
    x = _rand(*hw)
    ts = T.hr_transforms(8, (1, 2), flips=True, rotations=True)
    assert len(ts) == 17 * 3 * 4
    for t in ts:
        y = t.forward(x)
        assert torch.equal(t.inverse(y), x), t.name
    T.check_transforms(ts, 14, hw)  # raises on any failure


def test_flip_and_rotation_semantics():
    x = _rand(4, 6)
    assert torch.equal(T.flip("h").forward(x), x.flip(-1))
    assert torch.equal(T.flip("v").forward(x), x.flip(-2))
    r = T.rot90(1)
    assert r.output_hw((4, 6)) == (6, 4)
    assert torch.equal(r.forward(x), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(r.inverse(r.forward(x)), x)
    assert T.rot90(4).name == "identity"
    with pytest.raises(TransformError, match="flip axis"):
        T.flip("x")


def test_compose_applies_left_to_right_and_inverts_in_reverse():
    x = _rand(8, 8)
    t = T.compose(T.roll(1, 2), T.flip("h"))
    assert torch.equal(t.forward(x), torch.roll(x, (1, 2), (-2, -1)).flip(-1))
    assert torch.equal(t.inverse(t.forward(x)), x)
    assert t.shift == (1, 2)
    assert t.permutes_pixels
    assert T.compose(T.identity(), T.identity()).name == "identity"


def test_reference_style_wrong_inverse_order_is_rejected():
    # the reference notebook undid flip(shift(x)) by flip then shift *in forward order*
    sh, fl = T.roll(1, 0), T.flip("v")
    bad = T.Transform(
        "bad", lambda x: fl.forward(sh.forward(x)), lambda x: fl.inverse(sh.inverse(x)),
        permutes_pixels=True, shift=(1, 0),
    )
    with pytest.raises(TransformError, match="not invertible"):
        T.check_transforms([T.identity(), bad], 14, (16, 16))
    good = T.compose(sh, fl)
    T.check_transforms([T.identity(), good], 14, (16, 16))


def test_shift_of_half_a_patch_or_more_is_an_error():
    T.check_transforms(T.shift_transforms(8, 6), 14, (28, 28))  # 6 < 7: fine
    with pytest.raises(TransformError, match=r"half the patch size \(P / 2 = 7 px"):
        T.check_transforms(T.shift_transforms(4, 7), 14, (28, 28))
    with pytest.raises(TransformError, match="P / 2 = 8 px"):
        T.check_transforms([T.identity(), T.roll(0, -8)], 16, (32, 32))
    # the net shift of a composition counts
    with pytest.raises(TransformError, match="half the patch"):
        T.check_transforms([T.compose(T.roll(4, 0), T.roll(3, 0))], 14, (28, 28))


def test_non_invertible_pairs_and_false_permutation_claims_are_errors():
    noisy = T.Transform("noisy", lambda x: x * 0.0, lambda x: x)
    with pytest.raises(TransformError, match="noisy is not invertible"):
        T.check_transforms([noisy], 14, (16, 16))
    mismatch = T.Transform("mismatch", T.roll(1, 0).forward, lambda x: x)
    with pytest.raises(TransformError, match="not invertible"):
        T.check_transforms([mismatch], 14, (16, 16))
    # invertible (x2 then /2 is exact) but not a re-arrangement of pixels
    scaled = T.Transform("scaled", lambda x: x * 2, lambda x: x / 2, permutes_pixels=True)
    with pytest.raises(TransformError, match="claims to permute pixels"):
        T.check_transforms([scaled], 14, (16, 16))
    # a general (non-permuting) invertible pair is accepted to float tolerance
    affine = T.Transform("affine", lambda x: x * 3 + 1, lambda x: (x - 1) / 3)
    T.check_transforms([affine], 14, (16, 16))
    with pytest.raises(TransformError, match="at least the identity"):
        T.check_transforms([], 14, (16, 16))


@pytest.mark.parametrize("hw", [(7, 11), (9, 9)])
def test_source_coords_reproduce_the_inverse(hw):
    for t in T.hr_transforms(8, 2, flips=True, rotations=True):
        m = _rand(*t.output_hw(hw), seed=3)
        rows, cols = T.source_coords(t, hw)
        assert torch.equal(t.inverse(m), m[:, :, rows.long(), cols.long()]), t.name
