"""The classical filter bank: exact values on planted images, equivariance, input types."""

from __future__ import annotations

import numpy as np
import pytest

from headless.features.classical import (
    DEFAULT_SIGMAS,
    PER_SCALE,
    classical_feature_names,
    classical_features,
    window_radius,
)
from headless.images import ImageError

SIGMAS = (1.0, 2.0)


def channel(feats: np.ndarray, name: str, sigmas=SIGMAS, colour: bool = False) -> np.ndarray:
    return feats[..., classical_feature_names(sigmas, colour).index(name)]


def test_shape_dtype_names_and_finite_for_every_input_type():
    rng = np.random.default_rng(0)
    grey8 = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    for img in (grey8, grey8.astype(np.uint16) * 200, grey8.astype(np.float64) * 3.5 - 7,
                grey8 > 128, grey8[None]):
        f = classical_features(img)
        assert f.shape == (40, 50, len(classical_feature_names()))
        assert f.dtype == np.float32
        assert np.all(np.isfinite(f))
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    f = classical_features(rgb)
    assert f.shape[-1] == len(classical_feature_names(colour=True))
    assert len(classical_feature_names()) == 1 + len(PER_SCALE) * len(DEFAULT_SIGMAS) + 4
    # channels-first colour and RGBA are the same colour image
    np.testing.assert_array_equal(classical_features(np.moveaxis(rgb, -1, 0)), f)
    rgba = np.concatenate([rgb, np.full((40, 50, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(classical_features(rgba), f)


def test_colour_bank_is_the_luminance_bank_plus_smoothed_channels():
    rng = np.random.default_rng(1)
    rgb = rng.random((48, 40, 3)).astype(np.float32)
    lum = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
    f_rgb = classical_features(rgb, SIGMAS)
    f_lum = classical_features(lum, SIGMAS)
    n = f_lum.shape[-1]
    np.testing.assert_allclose(f_rgb[..., :n], f_lum, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(channel(f_rgb, "g_intensity", colour=True), rgb[..., 1])
    from scipy import ndimage as ndi

    np.testing.assert_allclose(channel(f_rgb, "b_gaussian_s2", colour=True),
                               ndi.gaussian_filter(rgb[..., 2], 2.0, truncate=3.0), atol=1e-6)


def test_ramp_gives_exact_gradient_structure_tensor_and_window_statistics():
    c = 0.004
    x = np.arange(120, dtype=np.float32)
    img = np.tile(0.2 + c * x, (100, 1)).astype(np.float32)  # within [0, 1]: not rescaled
    f = classical_features(img, SIGMAS)
    inner = (slice(30, 70), slice(30, 90))
    for s in SIGMAS:
        r = window_radius(s)
        np.testing.assert_allclose(channel(f, f"gradient_magnitude_s{s:g}")[inner], c, rtol=1e-3)
        np.testing.assert_allclose(channel(f, f"structure_eig1_s{s:g}")[inner], c * c, rtol=1e-3)
        np.testing.assert_allclose(channel(f, f"structure_eig2_s{s:g}")[inner], 0, atol=1e-9)
        np.testing.assert_allclose(channel(f, f"mean_s{s:g}")[inner], img[inner], atol=1e-5)
        np.testing.assert_allclose(channel(f, f"minimum_s{s:g}")[inner], img[inner] - c * r,
                                   atol=1e-6)
        np.testing.assert_allclose(channel(f, f"maximum_s{s:g}")[inner], img[inner] + c * r,
                                   atol=1e-6)
        # variance of a ramp over 2r+1 columns: c^2 ((2r+1)^2 - 1) / 12
        want = c * c * ((2 * r + 1) ** 2 - 1) / 12
        np.testing.assert_allclose(channel(f, f"variance_s{s:g}")[inner], want, rtol=2e-2)
        np.testing.assert_allclose(channel(f, f"laplacian_s{s:g}")[inner], 0, atol=1e-6)


def test_quadratic_gives_exact_hessian_eigenvalues():
    a, b = 2e-5, -1e-5
    yy, xx = np.mgrid[0:120, 0:120].astype(np.float64)
    img = (0.5 + a * (xx - 60) ** 2 + b * (yy - 60) ** 2).astype(np.float32)
    f = classical_features(img, SIGMAS)
    inner = (slice(30, 90), slice(30, 90))
    for s in SIGMAS:
        np.testing.assert_allclose(channel(f, f"hessian_eig1_s{s:g}")[inner], 2 * a, rtol=2e-2)
        np.testing.assert_allclose(channel(f, f"hessian_eig2_s{s:g}")[inner], 2 * b, rtol=2e-2)
        np.testing.assert_allclose(channel(f, f"laplacian_s{s:g}")[inner], 2 * (a + b),
                                   atol=2e-6)


def test_translation_equivariant_away_from_borders():
    rng = np.random.default_rng(2)
    from scipy import ndimage as ndi

    big = ndi.gaussian_filter(rng.random((260, 270)), 1.5).astype(np.float32)
    big = (big - big.min()) / (big.max() - big.min())
    dy, dx = 9, 14
    a = big[0:220, 0:230]
    b = big[dy:dy + 220, dx:dx + 230]  # b[y, x] == a[y + dy, x + dx]
    fa = classical_features(a)
    fb = classical_features(b)
    m = 3 * int(np.ceil(max(DEFAULT_SIGMAS))) * 2 + 4  # Gaussians, tensor, windows, taps
    region_b = (slice(m, 220 - m - dy), slice(m, 230 - m - dx))
    region_a = (slice(m + dy, 220 - m), slice(m + dx, 230 - m))
    scale = np.abs(fa).reshape(-1, fa.shape[-1]).max(axis=0) + 1e-12
    diff = np.abs(fb[region_b] - fa[region_a]) / scale
    assert diff.max() < 1e-4
    # ... and not near the borders, where reflection makes them differ (the test can fail)
    assert np.abs(fb[:3, :3] - fa[dy:dy + 3, dx:dx + 3]).max() > 1e-3


def test_bad_inputs_have_clear_messages():
    with pytest.raises(ImageError, match="stack|shape"):
        classical_features(np.zeros((5, 30, 30), np.uint8))
    with pytest.raises(ValueError, match="positive"):
        classical_features(np.zeros((30, 30)), sigmas=(0, 1))
    with pytest.raises(ValueError, match="increasing"):
        classical_features(np.zeros((30, 30)), sigmas=(2, 1))
    with pytest.raises(ValueError, match="at least one"):
        classical_features(np.zeros((30, 30)), sigmas=())


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(3)
    img = rng.random((64, 80)).astype(np.float32)
    np.testing.assert_array_equal(classical_features(img, workers=1),
                                  classical_features(img, workers=2))
