"""HR-Dv2 and stride reduction: exact equivalences on synthetic and tiny real backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from headless.features import transforms as T
from headless.features.forward import extract, pad_to_patch, preprocess
from headless.features.highres.average import average_over_transforms
from headless.features.highres.config import HRConfig
from headless.features.highres.driver import hr_features
from headless.features.highres.linear import hr_linear
from headless.features.highres.memory import (
    MemoryLimitError,
    estimate_memory,
    parse_bytes,
    plan_chunk,
)
from headless.features.highres.sample import hr_sample
from headless.features.highres.stride import patch_stride, patch_tokens, stride_grid
from headless.features.highres.taps import resize_taps
from headless.progress import Progress, run

P = 7
D = 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a thread pool only adds waiting on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
_W = torch.randn(3, D, generator=torch.Generator().manual_seed(1))


def pool_features(batch: torch.Tensor) -> torch.Tensor:
    """Synthetic ViT: mean colour of each P x P patch, then a fixed linear map (exact maths)."""
    return torch.einsum("bchw,cd->bhwd", F.avg_pool2d(batch, P), _W)


def reference_average(x, feature_fn, transforms, p, upsample="nearest-exact"):
    """The HR-Dv2 reference loop: features of each copy, resize to full size, invert, average."""
    acc = 0.0
    for t in transforms:
        xt = t.forward(x[None])
        th, tw = xt.shape[-2:]
        xp = pad_to_patch(xt, p)
        f = feature_fn(xp).permute(0, 3, 1, 2)
        up = F.interpolate(f, size=xp.shape[-2:], mode=upsample)[..., :th, :tw]
        acc = acc + t.inverse(up)
    return (acc / len(transforms))[0].permute(1, 2, 0)


def _image(h, w, seed=0):
    return torch.randn(3, h, w, generator=torch.Generator().manual_seed(seed))


def _hr(x, transforms, **kw):
    return run(average_over_transforms(x, pool_features, transforms, P, **kw))


# ----------------------------------------------------------------------------- taps


@pytest.mark.parametrize("mode", ["nearest-exact", "bilinear"])
@pytest.mark.parametrize(
    "out_hw,in_hw", [((35, 21), (5, 3)), ((8, 9), (37, 20)), ((50, 49), (49, 50))]
)
def test_resize_taps_reproduce_f_interpolate(mode, out_hw, in_hw):
    m = torch.randn(1, 2, *in_hw, dtype=torch.float64)
    ref = F.interpolate(m, size=out_hw, mode=mode)[0]
    got = torch.zeros(2, *out_hw, dtype=torch.float64)
    for ri, rw in resize_taps(out_hw[0], in_hw[0], mode):
        for ci, cw in resize_taps(out_hw[1], in_hw[1], mode):
            w = torch.ones(out_hw, dtype=torch.float64)
            if rw is not None:
                w = w * rw.double()[:, None]
            if cw is not None:
                w = w * cw.double()[None, :]
            got += w * m[0][:, ri[:, None], ci[None, :]]
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- averaging maths


def test_identity_only_is_nearest_upsampling_of_a_constant_per_patch_map():
    x = _image(4 * P, 3 * P)
    hr = _hr(x, [T.identity()])
    low = pool_features(x[None]).permute(0, 3, 1, 2)
    ref = F.interpolate(low, size=x.shape[-2:], mode="nearest")[0].permute(1, 2, 0)
    assert torch.equal(hr, ref)
    # every pixel carries its own patch's value
    assert torch.equal(hr[P + 3, 2 * P], low[0, :, 1, 2])


def test_shift_sign_convention_pixel_by_pixel():
    """HR[y, x] = mean over t of features(roll(image, s_t))[patch of (y + dy, x + dx)]."""
    x = _image(5 * P, 5 * P, seed=2)
    ts = T.shift_transforms(8, 2)
    hr = _hr(x, ts)
    for y, xx in [(10, 17), (20, 3), (31, 29)]:
        vals = []
        for t in ts:
            dy, dx = t.shift
            f = pool_features(torch.roll(x, (dy, dx), (-2, -1))[None])[0]
            vals.append(f[((y + dy) % (5 * P)) // P, ((xx + dx) % (5 * P)) // P])
        torch.testing.assert_close(hr[y, xx], torch.stack(vals).mean(0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("hw", [(4 * P, 5 * P), (30, 23)])
@pytest.mark.parametrize("upsample", ["nearest-exact", "bilinear"])
@pytest.mark.parametrize("kind", ["shifts4", "moore12", "flips", "rotations"])
def test_engine_equals_reference_loop(hw, upsample, kind):
    ts = {
        "shifts4": T.hr_transforms(4, 1),
        "moore12": T.hr_transforms(8, (1, 2)),
        "flips": T.hr_transforms(4, 2, flips=True),
        "rotations": T.hr_transforms(4, 1, rotations=True),
    }[kind]
    x = _image(*hw, seed=3)
    got = _hr(x, ts, upsample=upsample, chunk=4)
    ref = reference_average(x, pool_features, ts, P, upsample)
    assert got.shape == (*hw, D)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    # the general path (any callable pair, full maps) gives the same numbers
    general = [T.Transform(t.name, t.forward, t.inverse, shift=t.shift) for t in ts]
    torch.testing.assert_close(_hr(x, general, upsample=upsample), ref, atol=1e-5, rtol=0)


def test_bilinear_without_column_pre_interpolation_is_the_same(monkeypatch):
    import headless.features.highres.average as hr_average

    x = _image(30, 23, seed=8)
    ts = T.hr_transforms(4, 1, flips=True)
    ref = reference_average(x, pool_features, ts, P, "bilinear")
    monkeypatch.setattr(hr_average, "WIDEN_BYTES", 0)  # 4 taps per pixel instead of 2
    torch.testing.assert_close(_hr(x, ts, upsample="bilinear"), ref, atol=1e-5, rtol=0)


def test_non_separable_permutation_uses_the_per_pixel_path():
    """A shear (row y rolled by y px) is a pixel permutation whose index does not split into a
    row part plus a column part; the engine must still match the reference loop."""

    def shear(x, sign):
        return torch.stack([torch.roll(x[..., y, :], sign * y, dims=-1)
                            for y in range(x.shape[-2])], dim=-2)

    t = T.Transform("shear", lambda x: shear(x, 1), lambda x: shear(x, -1), permutes_pixels=True)
    x = _image(21, 21, seed=9)
    ts = [T.identity(), t, T.roll(1, 0)]
    torch.testing.assert_close(_hr(x, ts), reference_average(x, pool_features, ts, P),
                               atol=1e-5, rtol=0)


def test_chunking_does_not_change_the_result():
    x = _image(30, 40, seed=4)
    ts = T.hr_transforms(8, 1)
    a = _hr(x, ts, chunk=1)
    b = _hr(x, ts, chunk=9)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_averaging_over_shifts_is_smoother_than_patches_and_keeps_the_mean():
    """Planted step edge inside a patch: HR features change at more columns, each by less."""
    h, w = 3 * P, 6 * P
    x = torch.zeros(3, h, w)
    x[:, :, 17:] = 1.0  # edge at column 17, inside the patch [14, 21)
    patch = _hr(x, [T.identity()])[h // 2, :, 0]
    hr = _hr(x, T.hr_transforms(8, (1, 2, 3)))[h // 2, :, 0]
    jumps_patch = (patch.diff().abs() > 1e-6).sum()
    jumps_hr = (hr.diff().abs() > 1e-6).sum()
    assert jumps_hr > jumps_patch
    assert hr.diff().abs().max() < patch.diff().abs().max()
    # the HR profile changes around the true edge, not only at the patch boundary (14 / 21)
    assert (hr[16] - hr[13]).abs() > 1e-6


def test_fit_crop_matches_centre_crop_and_extends_edges():
    x = _image(33, 26, seed=5)  # crop to 28 x 21, offsets (round(2.5)=2, round(2.5)=2)
    ts = T.hr_transforms(4, 1)
    full = _hr(x, ts, fit="crop")
    assert full.shape == (33, 26, D)
    top, left = 2, 2
    crop = x[:, top:top + 28, left:left + 21]
    inner = _hr(crop, ts)
    torch.testing.assert_close(full[top:top + 28, left:left + 21], inner, atol=1e-6, rtol=0)
    torch.testing.assert_close(full[0, left:left + 21], inner[0])  # above: nearest cropped row
    torch.testing.assert_close(full[-1, -1], inner[-1, -1])
    with pytest.raises(ValueError, match="at least 7x7"):
        _hr(_image(5, 20), ts, fit="crop")


def test_pixels_and_projection_match_the_dense_map():
    x = _image(30, 23, seed=6)
    ts = T.hr_transforms(8, 1, flips=True)
    dense = _hr(x, ts)
    rows = torch.tensor([0, 29, 14, 7])
    cols = torch.tensor([22, 0, 11, 7])
    sampled = _hr(x, ts, pixels=(rows, cols))
    torch.testing.assert_close(sampled, dense[rows, cols], atol=1e-6, rtol=0)
    w = torch.randn(2, D)
    b = torch.tensor([0.5, -1.0])
    lin = _hr(x, ts, project=lambda f: f @ w.T + b)
    torch.testing.assert_close(lin, dense @ w.T + b, atol=1e-5, rtol=0)


def test_output_resolution_resize_is_bilinear_of_working_map():
    x = _image(28, 35, seed=7)
    ts = T.hr_transforms(4, 1)
    work = _hr(x, ts)
    out = _hr(x, ts, out_hw=(50, 61), resize="bilinear")
    ref = F.interpolate(work.permute(2, 0, 1)[None], size=(50, 61), mode="bilinear")[0]
    torch.testing.assert_close(out, ref.permute(1, 2, 0), atol=1e-5, rtol=0)


def test_engine_rejects_bad_input():
    x = _image(28, 28)
    with pytest.raises(T.TransformError, match="half the patch"):
        _hr(x, T.shift_transforms(4, 4))  # 4 >= 7 / 2
    with pytest.raises(ValueError, match="inside the 28x28 image"):
        _hr(x, [T.identity()], pixels=([0, 28], [0, 0]))
    with pytest.raises(ValueError, match=r"\(B, h, w, D\)"):
        run(average_over_transforms(x, lambda b: b[:, 0], [T.identity()], P))


# ----------------------------------------------------------------------------- memory rule


def test_plan_chunk_shrinks_then_refuses_with_size_and_linear_path():
    def est(c):
        return estimate_memory(out_values=10_000, chunk=c, tokens=1000, embed_dim=100,
                               feat_channels=100, input_pixels=10_000, work_pixels=100)

    big = est(8).total
    c, e = plan_chunk(est, 8, big, "x")
    assert c == 8
    c, e = plan_chunk(est, 8, est(2).total, "x")
    assert c == 2 and e.total <= est(2).total
    with pytest.raises(MemoryLimitError) as info:
        plan_chunk(est, 8, est(1).total - 1, "HR features of a test image")
    msg = str(info.value)
    assert "HR features of a test image would need about" in msg
    assert "hr_linear" in msg and "MiB" in msg
    assert parse_bytes("2G") == 2 * 1024**3 and parse_bytes("512MiB") == 512 * 1024**2
    assert parse_bytes("1000") == 1000


# ----------------------------------------------------------------------------- real backbones


@pytest.fixture(scope="module", params=["test_dinov2_tiny14_reg", "test_dino_tiny16"])
def backbone(request):
    from headless.features.backbones import load_backbone

    return load_backbone(request.param, weights="random")


def test_patch_tokens_match_the_foundation_extract(backbone):
    p = backbone.patch_size
    x = torch.randn(2, 3, 3 * p + 5, 2 * p, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(patch_tokens(backbone, x), extract(backbone, x).patch)


def test_stride_reduction_token_grid_and_restore(backbone):
    p = backbone.patch_size
    model = backbone.model
    x = torch.randn(1, 3, 4 * p, 3 * p, generator=torch.Generator().manual_seed(1))
    before = patch_tokens(backbone, x)
    for s in (p // 2, p // 4):
        grid = stride_grid((4 * p, 3 * p), p, s)
        assert grid == (1 + (4 * p - p) // s, 1 + (3 * p - p) // s)
        tokens = patch_tokens(backbone, x, stride=s)
        assert tokens.shape == (1, *grid, backbone.spec.embed_dim)
        with patch_stride(model, s), torch.inference_mode():
            raw = model.forward_features(x)
            assert model.patch_embed.dynamic_feat_size((4 * p, 3 * p)) == grid
        assert raw.shape[1] == grid[0] * grid[1] + model.num_prefix_tokens
    assert tuple(model.patch_embed.proj.stride) == (p, p)
    assert "dynamic_feat_size" not in model.patch_embed.__dict__
    assert model.patch_embed.dynamic_feat_size((4 * p, 3 * p)) == (4, 3)
    torch.testing.assert_close(patch_tokens(backbone, x), before, atol=0, rtol=0)
    # restored after an error inside the context, too
    with pytest.raises(RuntimeError, match="boom"), patch_stride(model, p // 2):
        raise RuntimeError("boom")
    assert tuple(model.patch_embed.proj.stride) == (p, p)
    torch.testing.assert_close(patch_tokens(backbone, x), before, atol=0, rtol=0)


def test_stride_reduction_embeds_overlapping_windows(backbone):
    """Stride P/2: the embedding at even grid points is the stride-P embedding of that patch."""
    p = backbone.patch_size
    pe = backbone.model.patch_embed
    x = torch.randn(1, 3, 4 * p, 4 * p, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        normal = pe(x)
        with patch_stride(backbone.model, p // 2):
            half = pe(x)
    assert normal.shape[1:3] == (4, 4) and half.shape[1:3] == (7, 7)
    torch.testing.assert_close(half[:, ::2, ::2], normal, atol=1e-5, rtol=1e-5)
    # odd grid points straddle two patches: the window starting at p/2
    win = x[:, :, p // 2:p // 2 + p, 0:p]
    ref = (pe.proj.weight * win).sum(dim=(1, 2, 3)) + pe.proj.bias
    torch.testing.assert_close(half[0, 1, 0], ref, atol=1e-4, rtol=1e-4)


def test_bad_strides_are_errors(backbone):
    p = backbone.patch_size
    x = torch.zeros(1, 3, 2 * p, 2 * p)
    for bad in (0, p + 1, 3.5):
        with pytest.raises(ValueError, match="stride must be a whole number"):
            patch_tokens(backbone, x, stride=bad)


def test_stride_needs_dynamic_image_size():
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=28, patch_size=14, embed_dim=12, depth=1, num_heads=2,
                              num_classes=0).eval()
    with pytest.raises(ValueError, match="dynamic_img_size"), patch_stride(model, 7):
        pass
    assert tuple(model.patch_embed.proj.stride) == (14, 14)


def _img(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_hr_linear_and_hr_sample_equal_dense_hr(backbone):
    img = _img(61, 74)  # upscaled to 4 patches for P = 16: the resize taps are exercised too
    opts = dict(shifts=8, dist=1, flips=True)
    dense = run(hr_features(backbone, img, **opts))
    assert dense.shape == (61, 74, backbone.spec.embed_dim) and dense.dtype == np.float32
    rng = np.random.default_rng(0)
    wmat = rng.normal(size=(4, backbone.spec.embed_dim)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    lin = run(hr_linear(backbone, img, wmat, bias, **opts))
    assert lin.shape == (61, 74, 4)
    np.testing.assert_allclose(lin, dense @ wmat.T + bias, atol=2e-4, rtol=1e-4)
    rows = np.array([0, 60, 30, 5, 17])
    cols = np.array([73, 0, 40, 5, 66])
    np.testing.assert_allclose(hr_sample(backbone, img, rows, cols, **opts), dense[rows, cols],
                               atol=1e-6, rtol=0)


def test_hr_with_stride_and_shifts_combined(backbone):
    p = backbone.patch_size
    img = _img(4 * p, 5 * p, seed=1)
    both = run(hr_features(backbone, img, shifts=4, stride=p // 2))
    x, _ = preprocess(img, backbone.spec)
    ts = T.hr_transforms(4, 1)
    ref = reference_average(
        x, lambda b: patch_tokens(backbone, b, stride=p // 2), ts, p
    ).numpy()
    np.testing.assert_allclose(both, ref, atol=1e-5, rtol=0)
    assert tuple(backbone.model.patch_embed.proj.stride) == (p, p)


def test_hr_features_refuses_big_requests_and_points_to_linear_path(backbone):
    img = _img(640, 640, seed=2)
    limit = 100 * 1024**2  # dense 640 x 640 x 48 float32 alone is 79 MB
    with pytest.raises(MemoryLimitError, match=r"would need about .*MiB.*hr_linear"):
        run(hr_features(backbone, img, max_bytes=limit))
    w = np.ones((4, backbone.spec.embed_dim), np.float32)
    out = run(hr_linear(backbone, img, w, max_bytes=limit))
    assert out.shape == (640, 640, 4)


def test_hr_errors_and_options(backbone):
    img = _img(60, 60)
    with pytest.raises(T.TransformError, match="half the patch"):
        run(hr_features(backbone, img, dist=backbone.patch_size // 2))
    with pytest.raises(TypeError, match="unknown HR option"):
        run(hr_features(backbone, img, shiftz=4))
    with pytest.raises(ValueError, match=r"weight must be \(C, D\)"):
        run(hr_linear(backbone, img, np.zeros((2, 3))))
    with pytest.raises(ValueError, match="upsample must be"):
        HRConfig(upsample="cubic")


def test_hr_size_gives_original_resolution_and_progress(backbone):
    img = _img(90, 130, seed=3)
    items = []
    out = run(hr_features(backbone, img, size=64, shifts=4), items.append)
    assert out.shape == (90, 130, backbone.spec.embed_dim)
    assert all(isinstance(i, Progress) for i in items)
    assert items[-1].done == items[-1].total == 5


# ----------------------------------------------------------------------------- package surface


def test_package_re_exports_every_public_name_callers_use():
    """``from headless.features.highres import X`` keeps working after the split into modules."""
    import headless.features as features
    import headless.features.highres as hr
    from headless.features.highres import driver, linear, memory, sample

    used = ("HRConfig", "MemoryLimitError", "average_over_transforms", "estimate_memory",
            "hr_features", "hr_linear", "hr_sample", "hr_sample_gen", "parse_bytes",
            "patch_stride", "patch_tokens", "plan_chunk", "resize_taps", "run_hr", "stride_grid")
    assert set(used) <= set(hr.__all__)
    for name in hr.__all__:
        assert getattr(hr, name) is not None, name
    assert hr.hr_linear is linear.hr_linear and hr.hr_sample_gen is sample.hr_sample_gen
    assert hr.run_hr is driver.run_hr and hr.MemoryLimitError is memory.MemoryLimitError
    assert features.hr_features is driver.hr_features and features.HRConfig is hr.HRConfig
