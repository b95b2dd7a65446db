"""dense_features: every mode at the original resolution, equal to its defining computation."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from headless.features.dense import MODES, dense_features, dense_pca_rgb, fit_pca_map
from headless.features.forward import (
    extract_image,
    grid_to_image,
    pad_to_patch,
    pca_rgb,
    preprocess,
)
from headless.features.highres import MemoryLimitError, hr_features
from headless.images import ImageError
from headless.progress import Progress, run


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a thread pool only adds waiting on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def backbone():
    from headless.features.backbones import load_backbone

    return load_backbone("test_dinov2_tiny14_reg", weights="random")


def _img(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _fake_bank(image):
    """A stand-in filter bank with known channels: grey level and its square."""
    g = np.asarray(image, np.float32).mean(axis=-1) / 255.0
    return np.stack([g, g * g], axis=-1)


@pytest.fixture
def fake_classical(monkeypatch):
    mod = types.ModuleType("headless.features.classical")
    mod.classical_features = _fake_bank
    monkeypatch.setitem(sys.modules, "headless.features.classical", mod)
    return mod


def test_patch_mode_is_each_pixels_patch_token(backbone):
    img = _img(60, 75)  # not multiples of 14: padded grid 5 x 6
    out = run(dense_features(img, "patch", backbone))
    assert out.shape == (60, 75, 48) and out.dtype == np.float32
    feats = extract_image(backbone, img)
    ref = grid_to_image(feats.patch[0].numpy(), feats)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out[20, 29], feats.patch[0, 1, 2].numpy())


def test_bilinear_mode_is_bilinear_upsampling_of_the_padded_grid(backbone):
    img = _img(60, 75, seed=1)
    out = run(dense_features(img, "bilinear", backbone))
    feats = extract_image(backbone, img)
    grid = feats.patch.permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(70, 84), mode="bilinear")[0, :, :60, :75].permute(1, 2, 0)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=0)


def test_hr_mode_is_hr_features_with_the_same_options(backbone):
    img = _img(60, 75, seed=2)
    out = run(dense_features(img, "hr", backbone, shifts=8, dist=2, flips=True, chunk=5))
    ref = run(hr_features(backbone, img, shifts=8, dist=2, flips=True))
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)
    assert not np.allclose(out, run(dense_features(img, "patch", backbone)))


def test_stride_applies_to_the_vit_modes(backbone):
    img = _img(56, 56, seed=3)
    x, _ = preprocess(img, backbone.spec)
    with_stride = run(dense_features(img, "patch", backbone, stride=7))
    from headless.features.highres import patch_tokens

    tok = patch_tokens(backbone, pad_to_patch(x[None], 14), stride=7)  # grid 7 x 7
    assert tok.shape[1:3] == (7, 7)
    ref = F.interpolate(tok.permute(0, 3, 1, 2), size=(56, 56), mode="nearest-exact")
    np.testing.assert_array_equal(with_stride, ref[0].permute(1, 2, 0).numpy())


def test_size_resizes_the_model_input_but_returns_original_resolution(backbone):
    img = _img(90, 130, seed=4)
    for mode in ("patch", "bilinear", "hr"):
        out = run(dense_features(img, mode, backbone, size=70))
        assert out.shape == (90, 130, 48), mode
        assert np.isfinite(out).all()


def test_classical_mode_needs_no_backbone(fake_classical):
    img = _img(30, 40, seed=5)
    out = run(dense_features(img, "classical"))
    np.testing.assert_array_equal(out, _fake_bank(img))


def test_hybrid_concatenates_hr_then_classical_channels(backbone, fake_classical):
    img = _img(42, 57, seed=6)
    out = run(dense_features(img, "hybrid", backbone, shifts=4))
    assert out.shape == (42, 57, 48 + 2) and out.dtype == np.float32
    hr = run(dense_features(img, "hr", backbone, shifts=4))
    np.testing.assert_array_equal(out[..., :48], hr)
    np.testing.assert_array_equal(out[..., 48:], _fake_bank(img))


def test_hybrid_with_the_real_filter_bank(backbone):
    classical = pytest.importorskip("headless.features.classical")
    img = _img(42, 57, seed=7)
    bank = np.asarray(classical.classical_features(img), np.float32)
    out = run(dense_features(img, "hybrid", backbone, shifts=4))
    assert out.shape == (42, 57, 48 + bank.shape[-1])
    np.testing.assert_array_equal(out[..., 48:], bank)


def test_bad_requests_are_clear_errors(backbone):
    img = _img(40, 40)
    with pytest.raises(ValueError, match="unknown feature mode 'fancy'"):
        run(dense_features(img, "fancy", backbone))
    with pytest.raises(ValueError, match="needs a ViT backbone.*'classical'"):
        run(dense_features(img, "hr"))
    with pytest.raises(ValueError, match="shifts must be 0, 4"):
        run(dense_features(img, "hr", backbone, shifts=5))
    with pytest.raises(ValueError, match="half the patch"):
        run(dense_features(img, "hr", backbone, dist=7))
    with pytest.raises(ValueError, match="stride must be a whole number"):
        run(dense_features(img, "hr", backbone, stride=20))
    with pytest.raises(ImageError, match="2D image"):
        run(dense_features(np.zeros(5), "patch", backbone))
    with pytest.raises(MemoryLimitError, match="hr_linear"):
        run(dense_features(_img(300, 300), "hr", backbone, max_bytes=20 * 1024**2))


def test_progress_is_reported(backbone):
    items: list[Progress] = []
    run(dense_features(_img(40, 40), "hr", backbone, shifts=8), items.append)
    assert items and items[-1].done == items[-1].total == 9
    assert set(MODES) == {"patch", "bilinear", "hr", "classical", "hybrid"}


def test_fit_pca_map_reproduces_pca_rgb():
    x = np.random.default_rng(0).normal(size=(300, 12)) @ np.diag(np.arange(12.0, 0, -1))
    w, b = fit_pca_map(x)
    np.testing.assert_allclose(np.clip(x @ w.T + b, 0, 1), pca_rgb(x), atol=1e-5)


def test_dense_pca_view_equals_pca_of_the_dense_map_without_building_it(backbone):
    img = _img(60, 75, seed=8)
    # patch mode: PCA of the patch tokens, shown per pixel = pca_rgb of the grid, upsampled
    feats = extract_image(backbone, img)
    ref = grid_to_image(pca_rgb(feats.patch[0]), feats)
    np.testing.assert_allclose(run(dense_pca_rgb(img, "patch", backbone)), ref, atol=1e-5)
    # hr: the same affine map (fitted on the untransformed copy) applied to the dense HR map
    w, b = fit_pca_map(feats.patch[0].reshape(-1, 48).double().numpy())
    hr = run(dense_features(img, "hr", backbone, shifts=8, flips=True))
    view = run(dense_pca_rgb(img, "hr", backbone, shifts=8, flips=True))
    assert view.shape == (60, 75, 3)
    np.testing.assert_allclose(view, np.clip(hr @ w.T + b, 0, 1), atol=1e-4)


def test_dense_pca_view_of_classical_features(fake_classical):
    img = _img(30, 40, seed=9)
    np.testing.assert_allclose(run(dense_pca_rgb(img, "classical")), pca_rgb(_fake_bank(img)))
