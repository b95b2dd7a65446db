"""Features, attention, DINO's mask and PCA: exact properties and planted structure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from headless.features.backbones import load_backbone
from headless.features.forward import (
    attention_mask,
    extract,
    extract_image,
    extract_images,
    grid_to_image,
    pca_rgb,
    plan_size,
    preprocess,
)
from headless.progress import run


@pytest.fixture(scope="module", params=["test_dino_tiny16", "test_dinov2_tiny14_reg"])
def backbone(request):
    torch.manual_seed(0)
    return load_backbone(request.param, "random")


def _full_last_attention(backbone, x):
    """Independent reference: timm's own (non-fused) softmax attention of the last block."""
    attn_mod = backbone.model.blocks[-1].attn
    captured = {}
    old = attn_mod.fused_attn
    attn_mod.fused_attn = False
    h = attn_mod.attn_drop.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    try:
        with torch.no_grad():
            backbone.model.forward_features(x)
    finally:
        h.remove()
        attn_mod.fused_attn = old
    return captured["a"]


def test_attention_matches_timm_and_rows_sum_to_one(backbone):
    x, _ = preprocess(np.random.default_rng(1).random((64, 80, 3)), backbone.spec)
    feats = extract(backbone, x[None])
    p = backbone.patch_size
    feats_input = torch.nn.functional.pad(x[None], (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p))
    full = _full_last_attention(backbone, feats_input)
    assert feats_input.shape[-1] % backbone.patch_size == 0
    torch.testing.assert_close(full.sum(-1), torch.ones(full.shape[:-1]), atol=1e-5, rtol=0)
    prefix = backbone.model.num_prefix_tokens
    ref = full[:, :, 0, prefix:].reshape(feats.attn.shape)
    torch.testing.assert_close(feats.attn, ref, atol=1e-6, rtol=1e-4)
    # CLS attention over patches + prefix tokens sums to 1; registers are excluded from maps
    cls_to_prefix = full[:, :, 0, :prefix].sum(-1)
    torch.testing.assert_close(feats.attn.sum((-1, -2)) + cls_to_prefix,
                               torch.ones_like(cls_to_prefix), atol=1e-5, rtol=0)


def test_qkv_follow_the_reference_layout(backbone):
    """k = heads concatenated back, CLS/registers removed, no scaling (FIDELITY.md)."""
    x, _ = preprocess(np.random.default_rng(2).random((48, 48)), backbone.spec)
    captured = {}
    h = backbone.model.blocks[-1].attn.qkv.register_forward_hook(
        lambda m, i, o: captured.__setitem__("qkv", o))
    feats = extract(backbone, x[None])
    h.remove()
    qkv = captured["qkv"]
    b, t, three_d = qkv.shape
    d = three_d // 3
    prefix = backbone.model.num_prefix_tokens
    # the reference reshape: (B, T, 3, heads, hd) -> k = [..., 1, :, :] flattened per token
    k_ref = qkv.reshape(b, t, 3, d)[:, prefix:, 1]
    torch.testing.assert_close(feats.k, k_ref)
    assert feats.q.shape == feats.k.shape == feats.v.shape == (1, feats.grid[0] * feats.grid[1], d)


@pytest.mark.parametrize("hw", [(64, 64), (100, 130), (47, 200)])
def test_map_shapes_follow_patch_grid(backbone, hw):
    img = np.random.default_rng(3).integers(0, 255, (*hw, 3), dtype=np.uint8)
    f = extract_image(backbone, img)
    p = backbone.patch_size
    (h, w), _ = plan_size(hw, p)
    assert f.grid == (math.ceil(h / p), math.ceil(w / p))
    assert f.patch.shape[1:3] == f.grid and f.attn.shape[-2:] == f.grid
    assert f.input_hw == (h, w) and f.orig_hw == hw
    up = grid_to_image(f.attn[0, 0].numpy(), f)
    assert up.shape == hw


def test_size_rule_resizes_longer_side_and_guards_extremes():
    assert plan_size((300, 450), 14, size=224)[0] == (149, 224)
    (h, w), notes = plan_size((5000, 5000), 14, max_tokens=1024)
    assert math.ceil(h / 14) * math.ceil(w / 14) <= 1024 and "downscaled" in notes[0]
    (h, w), notes = plan_size((10, 30), 16)
    assert min(h, w) == 64 and w == 192 and "upscaled" in notes[0]


def test_layer_transform_maps_patch_centres_onto_image_pixels(backbone):
    f = extract_image(backbone, np.zeros((90, 60), np.uint8), size=180)
    (sy, sx), (ty, tx) = f.layer_transform()
    p = f.patch_size
    # patch (0, 0) covers original pixels [0, p/2) (the model saw the image at 2x)
    assert sy == pytest.approx(p / 2) and ty == pytest.approx(p / 4 - 0.5)
    centre_of_patch_3 = 3 * sy + ty
    assert centre_of_patch_3 == pytest.approx((3 * p + p / 2) / 2 - 0.5)


def test_batched_extraction_equals_one_by_one(backbone):
    rng = np.random.default_rng(4)
    imgs = [rng.random((48, 64, 3)).astype(np.float32) for _ in range(3)] + [
        rng.random((32, 32)).astype(np.float32)]
    batched = run(extract_images(backbone, imgs, batch_size=2))
    for img, fb in zip(imgs, batched):
        fs = extract_image(backbone, img)
        torch.testing.assert_close(fb.patch, fs.patch, atol=1e-5, rtol=1e-4)
        assert fb.orig_hw == img.shape[:2]


def test_attention_mask_hand_computed():
    a = np.array([[0.5, 0.3], [0.1, 0.1]])
    np.testing.assert_array_equal(attention_mask(a, 0.6), [[True, True], [False, False]])
    np.testing.assert_array_equal(attention_mask(a, 0.5), [[True, False], [False, False]])
    np.testing.assert_array_equal(attention_mask(a, 1.0), np.ones((2, 2), bool))
    with pytest.raises(ValueError):
        attention_mask(a, 0.0)


def test_attention_mask_recovers_planted_block():
    attn = np.full((3, 10, 10), 0.3 / 91)  # 3 heads; background holds 30 % of the mass
    attn[:, 2:5, 6:9] = 0.7 / 9
    mask = attention_mask(attn, keep=0.65)  # 9 block patches of 0.078: 8 hold 0.62 < 0.65
    expected = np.zeros((10, 10), bool)
    expected[2:5, 6:9] = True
    for hmask in mask:
        np.testing.assert_array_equal(hmask, expected)


def test_attention_mask_equals_dinos_cumulative_formulation():
    """DINO's code: sort ascending, keep where the cumulative mass exceeds 1 - keep."""
    rng = np.random.default_rng(7)
    a = rng.random((4, 9, 11)) ** 3
    for keep in (0.3, 0.6, 0.9):
        flat = a.reshape(4, -1) / a.reshape(4, -1).sum(1, keepdims=True)
        idx = np.argsort(flat, axis=1)
        cum = np.cumsum(np.take_along_axis(flat, idx, 1), axis=1)
        ref = np.zeros_like(flat, bool)
        np.put_along_axis(ref, idx, cum > 1 - keep, axis=1)
        np.testing.assert_array_equal(attention_mask(a, keep), ref.reshape(a.shape))


def test_pca_rgb_range_and_planted_block_separation():
    rng = np.random.default_rng(5)
    d = 32
    feats = rng.normal(0, 0.05, (12, 12, d))
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    feats[3:7, 4:9] += 2.0 * direction  # a block of patches sharing one direction
    rgb = pca_rgb(feats)
    assert rgb.shape == (12, 12, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    block = np.zeros((12, 12), bool)
    block[3:7, 4:9] = True
    first = rgb[..., 0]
    assert first[block].min() > first[~block].max() or first[block].max() < first[~block].min()


def test_pca_foreground_fit_uses_only_masked_vectors():
    rng = np.random.default_rng(6)
    feats = rng.normal(0, 1, (8, 8, 16))
    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    feats[:4, :, 0] *= 10  # foreground varies along axis 0; background along axis 1
    feats[4:, :, 1] *= 30
    fg = pca_rgb(feats, mask=mask)
    allfit = pca_rgb(feats)
    assert not np.allclose(fg, allfit)
    # foreground PCA's first channel follows feature 0 inside the mask
    corr = np.corrcoef(fg[:4, :, 0].ravel(), feats[:4, :, 0].ravel())[0, 1]
    assert abs(corr) > 0.9


@pytest.mark.parametrize(
    "img",
    [
        np.random.default_rng(0).integers(0, 65535, (40, 50), dtype=np.uint16),
        np.random.default_rng(0).random((1, 40, 50)).astype(np.float64) * 1000 - 3,
        np.random.default_rng(0).integers(0, 255, (40, 50, 4), dtype=np.uint8),
        np.zeros((40, 50), bool),
        np.random.default_rng(0).integers(0, 255, (3, 3), dtype=np.uint8),
    ],
    ids=["uint16", "float-leading-axis", "rgba", "bool", "smaller-than-a-patch"],
)
def test_odd_image_types_are_handled(img):
    b = load_backbone("test_dino_tiny16", "random")
    f = extract_image(b, img)
    assert torch.isfinite(f.patch).all() and f.grid[0] >= 4


def test_stack_gives_a_clear_message():
    from headless.images import ImageError

    b = load_backbone("test_dino_tiny16", "random")
    with pytest.raises(ImageError, match="one slice"):
        extract_image(b, np.zeros((6, 40, 50), np.uint8))
