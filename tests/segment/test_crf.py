"""Dense CRF: removes speckle, snaps boundaries to image edges, validates its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from headless.images import ImageError
from headless.segment.crf import CRFParams, crf_guide, crf_refine


def square_scene(h=64, w=64):
    img = np.full((h, w), 60, np.uint8)
    img[16:48, 16:48] = 190
    truth = np.zeros((h, w), np.int64)
    truth[16:48, 16:48] = 1
    return img, truth


def test_speckle_is_removed_and_probabilities_stay_normalised():
    img, truth = square_scene()
    rng = np.random.default_rng(0)
    p1 = np.where(truth == 1, 0.8, 0.2)
    flip = rng.random(truth.shape) < 0.08  # isolated wrong, but not confident, pixels
    p1 = np.where(flip, 1 - p1, p1)
    proba = np.stack([1 - p1, p1], axis=-1).astype(np.float32)
    before = (proba.argmax(-1) != truth).mean()
    out = crf_refine(img, proba, CRFParams(gaussian_sxy=3, gaussian_compat=3))
    assert out.shape == proba.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(-1), 1, atol=1e-4)
    after = (out.argmax(-1) != truth).mean()
    assert before > 0.05 and after < before / 4


def test_boundary_follows_the_image_edge():
    img, truth = square_scene()
    from scipy import ndimage as ndi

    # probabilities blurred across the edge and shifted by 3 px: the bilateral kernel must
    # pull the boundary back onto the intensity edge
    p1 = ndi.gaussian_filter(np.roll(truth, 3, axis=1).astype(np.float32), 3)
    p1 = np.clip(p1, 0.05, 0.95)
    proba = np.stack([1 - p1, p1], axis=-1)
    before = (proba.argmax(-1) != truth).sum()
    params = CRFParams(gaussian_compat=0, bilateral_sxy=10, bilateral_srgb=10,
                       bilateral_compat=10, iterations=10)
    after = (crf_refine(img, proba, params).argmax(-1) != truth).sum()
    assert after < before / 2


def test_guide_is_stretched_contiguous_uint8_for_any_input():
    img16 = (np.arange(100 * 80).reshape(100, 80) % 4000).astype(np.uint16)
    g = crf_guide(img16)
    assert g.dtype == np.uint8 and g.shape == (100, 80, 3) and g.flags.c_contiguous
    assert g.min() == 0 and g.max() == 255
    rgb = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    assert crf_guide(rgb).shape == (30, 20, 3)


def test_bad_inputs():
    img, _ = square_scene()
    with pytest.raises(ImageError, match="64x64.*32x32"):
        crf_refine(img, np.full((32, 32, 2), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        crf_refine(img, np.full((64, 64), 0.5, np.float32))
    with pytest.raises(ValueError, match="positive"):
        CRFParams(bilateral_srgb=0)
    with pytest.raises(ValueError, match="iterations"):
        CRFParams(iterations=0)
    one = np.ones((64, 64, 1), np.float32)
    np.testing.assert_array_equal(crf_refine(img, one), one)
