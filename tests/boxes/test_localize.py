"""Box methods on planted features: DINO attention, LOST, MOST, TokenCut.

Planted features: a background of mutually similar tokens with one or two blocks of mutually
similar tokens whose directions are anti-correlated with the background and with each other
(the vertices of a centred simplex), plus noise. Each method must recover the block(s) exactly in
pixels. Hand-made cases pin the box conventions of the reference code, and loop-by-loop
re-implementations of the reference steps pin the vectorised MOST / DBSCAN code.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from headless.boxes.localize import DEFAULTS, METHODS, localize
from headless.boxes.localize._grid import (
    as_tokens,
    check_geometry,
    component_box,
    grid_shape,
    label_components,
    seed_component,
    to_original,
)
from headless.boxes.localize.dino_attention import dino_attention_boxes, mass_mask
from headless.boxes.localize.lost import degree_order, lost
from headless.boxes.localize.most import (
    cityblock_pools,
    entropy_bits,
    foreground_tokens,
    keep_box,
    most,
)
from headless.boxes.localize.tokencut import second_eigenvector, token_graph, tokencut

P = 16
GRID = (20, 20)
IMAGE = (320, 320)


def planted(grid=GRID, dim=32, blocks=((5, 10, 4, 9),), noise=0.1, seed=0) -> np.ndarray:
    """(h*w, dim) tokens: background direction plus blocks [r0, r1) x [c0, c1) of others."""
    rng = np.random.default_rng(seed)
    h, w = grid
    basis = np.linalg.qr(rng.normal(size=(dim, len(blocks) + 1)))[0].T
    dirs = basis - basis.mean(axis=0)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)  # pairwise cosine -1/len(blocks)
    feats = np.tile(dirs[0], (h, w, 1))
    for i, (r0, r1, c0, c1) in enumerate(blocks):
        feats[r0:r1, c0:c1] = dirs[i + 1]
    feats = feats + noise * rng.normal(size=feats.shape)
    return feats.reshape(h * w, dim).astype(np.float32)


def block_box(block, p=P):
    r0, r1, c0, c1 = block
    return (float(p * c0), float(p * r0), float(p * c1), float(p * r1))


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


# --------------------------------------------------------------------------- grid conventions


def test_component_box_reference_convention():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 1:4] = True  # rows 2..4, cols 1..3
    assert component_box(mask, 16, (128, 128)) == (16.0, 32.0, 64.0, 80.0)


def test_component_box_clips_only_x1_y1_when_image_not_multiple_of_patch():
    image_hw = (50, 70)  # H=50, W=70 -> grid (4, 5), padded to 64 x 80
    assert grid_shape(image_hw, 16) == (4, 5)
    mask = np.zeros((4, 5), bool)
    mask[2:4, 3:5] = True
    assert component_box(mask, 16, image_hw) == (48.0, 32.0, 70.0, 50.0)


def test_components_use_4_connectivity():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = mask[1, 2] = True  # (0,0) touches (1,1) only diagonally
    _, count = label_components(mask)
    assert count == 2
    comp = seed_component(mask, 0)
    assert comp.sum() == 1 and comp[0, 0]
    comp = seed_component(mask, 1 * 4 + 2)
    assert comp.sum() == 2 and comp[1, 1] and comp[1, 2]
    assert seed_component(mask, 3) is None  # seed on the background


def test_geometry_and_token_checks_name_the_problem():
    with pytest.raises(ValueError, match="expected \\(4, 5\\)"):
        check_geometry((4, 4), 16, (50, 70))
    with pytest.raises(ValueError, match="tokens"):
        as_tokens(np.zeros((17, 8)), (4, 4))
    bad = np.zeros((16, 8), np.float32)
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        as_tokens(bad, (4, 4))
    # (1, T, D) and (h, w, D) layouts are accepted; torch tensors too
    assert as_tokens(np.ones((1, 16, 8)), (4, 4)).shape == (16, 8)
    assert as_tokens(torch.ones(4, 4, 8), (4, 4)).shape == (16, 8)


def test_to_original_scales_each_axis():
    assert to_original((16, 32, 64, 80), (320, 320), (640, 960)) == (48.0, 64.0, 192.0, 160.0)
    assert to_original((16, 32, 64, 80), (320, 320), None) == (16.0, 32.0, 64.0, 80.0)


# --------------------------------------------------------------------------- DINO attention


def test_mass_mask_keeps_smallest_set_holding_keep_of_the_mass():
    attn = np.array([[1.0, 2.0], [3.0, 4.0]])  # cumulative sorted mass .1 .3 .6 1.
    np.testing.assert_array_equal(mass_mask(attn, 0.6), [[False, False], [True, True]])
    np.testing.assert_array_equal(mass_mask(attn, 0.85), [[False, True], [True, True]])


def test_dino_box_centre_and_size_rule_on_a_ragged_map():
    attn = np.full((6, 6), 0.01)
    cells = [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]  # an L: rows {1,2,3}, cols {1,2,3}
    for r, c in cells:
        attn[r, c] = 1.0
    boxes = dino_attention_boxes(attn, 10, (60, 60), keep=0.9)
    assert len(boxes) == 1
    # centre = mean of foreground coordinates (1.6, 1.6) -> pixel (1.6 + 0.5) * 10 = 21;
    # height = width = 3 rows / columns holding foreground -> 30 px
    box = boxes[0]
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((6.0, 6.0, 36.0, 36.0))
    assert box.source == "dino"
    # score: attention mass inside the box (patch units 0.6..3.6, partial patches pro rata)
    assert 0.5 < box.score < 1.0  # the L's arm tips are only partly inside the box
    assert box.score == pytest.approx(_fractional_mass(attn, (0.6, 0.6, 3.6, 3.6)), rel=1e-9)


def _fractional_mass(attn, box):
    total = 0.0
    for r in range(attn.shape[0]):
        for c in range(attn.shape[1]):
            oy = max(0.0, min(r + 1, box[3]) - max(r, box[1]))
            ox = max(0.0, min(c + 1, box[2]) - max(c, box[0]))
            total += oy * ox * attn[r, c]
    return total / attn.sum()


def test_dino_box_on_planted_attention_block_and_heads():
    rng = np.random.default_rng(1)
    attn = rng.uniform(0.5, 1.5, size=(3, 20, 20))
    block = np.zeros((20, 20), bool)
    block[6:12, 3:11] = True
    attn[:, ~block] *= 0.3 / attn[:, ~block].sum(axis=1, keepdims=True)  # background: 30 %
    attn[:, block] *= 0.7 / attn[:, block].sum(axis=1, keepdims=True)  # block: 70 % of mass
    attn *= 0.95  # softmax over CLS and patches: rows over patches sum below 1
    truth = block_box((6, 12, 3, 11))
    # keeping 69.5 % of the mass keeps exactly the block (its weakest patch holds > 0.5 %)
    for heads in ("mean", "union", 0, 2):
        (box,) = dino_attention_boxes(attn, P, IMAGE, heads=heads, keep=0.695)
        assert box.xyxy() == pytest.approx(truth), heads
        assert box.score == pytest.approx(0.7, abs=1e-9)
    # DINO's default 0.6 drops the block's weakest patches but the box still matches
    (box,) = dino_attention_boxes(torch.from_numpy(attn[None]), P, IMAGE)
    assert iou(box.xyxy(), truth) >= 0.9


def test_dino_largest_component_option():
    attn = np.full((10, 10), 1e-4)
    attn[1:3, 1:3] = 1.0  # 4 patches
    attn[5:9, 5:9] = 1.0  # 16 patches
    (all_fg,) = dino_attention_boxes(attn, 10, (100, 100), keep=0.95)
    (largest,) = dino_attention_boxes(attn, 10, (100, 100), keep=0.95, component="largest")
    assert largest.xyxy() == pytest.approx((50.0, 50.0, 90.0, 90.0))
    assert all_fg.area > largest.area


def test_dino_no_attention_gives_no_box():
    assert dino_attention_boxes(np.zeros((2, 4, 4)), 16, (64, 64)) == []
    flat = dino_attention_boxes(np.ones((4, 4)), 16, (64, 64))  # flat map: no crash
    assert len(flat) == 1


# --------------------------------------------------------------------------- LOST


def test_lost_finds_planted_block_exactly():
    block = (5, 10, 4, 9)
    (box,) = lost(planted(blocks=(block,)), GRID, P, IMAGE)
    assert box.xyxy() == block_box(block)
    assert box.source == "lost"
    # the seed correlates positively with the other 24 block patches only
    assert box.score == pytest.approx(1 - 24 / 399)


def test_lost_degree_excludes_diagonal_and_counts_positive_entries():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [0.0, 0.0]])
    order, degree = degree_order(feats @ feats.T)
    assert degree.tolist() == [1, 1, 0, 0]
    assert int(order[0]) in (2, 3)
    stable_order, _ = degree_order(feats @ feats.T, "stable")
    assert int(stable_order[0]) == 2  # ties broken by the lower token index


def test_lost_seed_tie_break_follows_reference_argsort():
    rng = np.random.default_rng(3)
    f = torch.from_numpy(rng.integers(-1, 2, size=(64, 3)).astype(np.float32))
    A = f @ f.T
    order, degree = degree_order(A)
    reference = torch.argsort(-degree.to(torch.float32), descending=True)
    assert torch.equal(order, reference)
    stable, _ = degree_order(A, "stable")
    lowest = np.flatnonzero(degree.numpy() == degree.min().item())
    assert int(stable[0]) == lowest[0] and int(order[0]) in lowest


def test_lost_zero_and_flat_features_do_not_crash():
    assert lost(np.zeros((400, 32), np.float32), GRID, P, IMAGE) == []
    (box,) = lost(np.ones((400, 32), np.float32), GRID, P, IMAGE)  # everything correlated
    assert box.xyxy() == (0.0, 0.0, 320.0, 320.0)


def test_lost_maps_boxes_to_original_image():
    block = (5, 10, 4, 9)
    (box,) = lost(planted(blocks=(block,)), GRID, P, IMAGE, orig_hw=(640, 960))
    x0, y0, x1, y1 = block_box(block)
    assert box.xyxy() == (x0 * 3, y0 * 2, x1 * 3, y1 * 2)


# --------------------------------------------------------------------------- TokenCut


def test_tokencut_finds_planted_block_exactly():
    block = (3, 9, 10, 17)
    feats = planted(blocks=(block,), seed=4)
    (box,) = tokencut(feats, GRID, P, IMAGE)
    assert box.xyxy() == block_box(block)
    assert box.source == "tokencut" and box.score > 0.99  # nearly disconnected graph
    (gen,) = tokencut(feats, GRID, P, IMAGE, solver="generalized")
    assert gen.xyxy() == box.xyxy() and gen.score == pytest.approx(box.score, abs=1e-9)


def test_tokencut_solvers_agree_on_a_random_graph():
    rng = np.random.default_rng(5)
    tokens = rng.normal(size=(144, 16)).astype(np.float32) + 0.3
    graph = token_graph(tokens, tau=0.2, eps=1e-5)
    assert set(np.unique(graph)) <= {1.0, 1e-5}
    lam_s, vec_s = second_eigenvector(graph, "standard")
    lam_g, vec_g = second_eigenvector(graph, "generalized")
    assert lam_s == pytest.approx(lam_g, abs=1e-10)
    d = graph.sum(axis=1)
    residual = (np.diag(d) - graph) @ vec_s - lam_s * d * vec_s
    assert np.abs(residual).max() < 1e-8
    assert abs(abs(vec_s @ (d * vec_g)) - 1.0) < 1e-8  # same D-normalised vector up to sign


def test_tokencut_flat_and_zero_features_do_not_crash():
    for feats in (np.zeros((400, 32), np.float32), np.ones((400, 32), np.float32)):
        boxes = tokencut(feats, GRID, P, IMAGE)
        assert isinstance(boxes, list)
    assert tokencut(np.ones((1, 4), np.float32), (1, 1), 16, (16, 16)) == []


# --------------------------------------------------------------------------- MOST


def test_most_finds_single_planted_block():
    block = (5, 10, 4, 9)
    boxes = most(planted(blocks=(block,)), GRID, P, IMAGE)
    assert [b.xyxy() for b in boxes] == [block_box(block)]
    assert boxes[0].source == "most" and boxes[0].score == pytest.approx(25 / 400)


def test_most_finds_both_planted_blocks():
    blocks = ((2, 7, 2, 7), (12, 18, 10, 17))
    boxes = most(planted(blocks=blocks, seed=2), GRID, P, IMAGE)
    assert len(boxes) == 2
    for block, box in zip(blocks, boxes, strict=True):  # pools in raster order of first token
        assert iou(box.xyxy(), block_box(block)) >= 0.9
    assert boxes[1].score > boxes[0].score  # the bigger object holds more foreground tokens
    # LOST and TokenCut find one of them
    for method in (lost, tokencut):
        (box,) = method(planted(blocks=blocks, seed=2), GRID, P, IMAGE)
        assert max(iou(box.xyxy(), block_box(b)) for b in blocks) >= 0.9


def test_most_drops_trivial_boxes():
    assert not keep_box((0, 0, 16, 40), (320, 320))  # side of 16 px
    assert keep_box((0, 0, 17, 17), (320, 320))  # 17 x 17 = 289 > 256
    assert not keep_box((0, 0, 310, 310), (320, 320))  # >= 0.9 of the image
    one_patch = planted(blocks=((8, 9, 8, 9),), seed=6)
    assert most(one_patch, GRID, P, IMAGE) == []
    kept = most(one_patch, GRID, P, IMAGE, filter_boxes=False)
    assert [b.xyxy() for b in kept] == [(128.0, 128.0, 144.0, 144.0)]


def test_most_zero_and_flat_features_give_no_box():
    assert most(np.zeros((400, 32), np.float32), GRID, P, IMAGE) == []
    assert most(np.ones((400, 32), np.float32), GRID, P, IMAGE) == []  # full image: dropped


def _reference_foreground(A: torch.Tensor, dims, ks=(1, 2, 3, 4, 5)) -> list[int]:
    """The reference's per-token loop: one map, one pooling, one torch.unique at a time."""
    sizes = sorted({min(k, min(dims)) for k in ks})
    pool_dims = [(dims[0] - k + 1, dims[1] - k + 1) for k in sizes]
    poolers = [torch.nn.AdaptiveAvgPool2d(d) for d in pool_dims]
    thresholds = [1 + np.log(d[0]) / np.log(2) for d in pool_dims]
    seeds = []
    for i in range(A.shape[0]):
        m = A[i].clone()
        m[m <= 0] = 0
        m = m.reshape(dims)
        passed = 0
        for pooler, threshold in zip(poolers, thresholds, strict=True):
            values = pooler(m[None, None]).reshape(-1)
            _, counts = torch.unique(values, return_counts=True)
            freq = counts / counts.sum()
            ent = -torch.sum(freq * torch.log(freq) / torch.log(torch.tensor([2.0]))).item()
            passed += ent < threshold
        if passed >= 0.5 * len(sizes):
            seeds.append(i)
    return seeds


def test_most_entropy_test_matches_reference_loop():
    grid = (12, 13)
    feats = planted(grid=grid, dim=16, blocks=((2, 6, 3, 8),), noise=0.4, seed=7)
    A = torch.from_numpy(feats) @ torch.from_numpy(feats).T
    ours = foreground_tokens(A, grid)
    reference = _reference_foreground(A, grid)
    assert ours.tolist() == reference
    assert 0 < len(reference) < A.shape[0]  # the test separates tokens


def test_entropy_bits_hand_cases():
    values = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(entropy_bits(values), [0.0, 2.0, 1.0], atol=1e-6)


def test_cityblock_pools_match_sklearn_dbscan():
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(8)
    for eps in (1, 2, 3):
        coords = rng.integers(0, 20, size=(60, 2))
        ours = cityblock_pools(coords, eps)
        theirs = sklearn_cluster.DBSCAN(eps=eps, metric="cityblock", min_samples=1).fit(coords)
        np.testing.assert_array_equal(ours, theirs.labels_)
    # distance exactly eps joins, eps + 1 separates
    np.testing.assert_array_equal(cityblock_pools(np.array([[0, 0], [1, 1], [4, 1]]), 2), [0, 0, 1])


# --------------------------------------------------------------------------- dispatcher


def _features(q, k, v, attn, grid=GRID, patch=P, input_hw=IMAGE):
    def t(a):
        return torch.from_numpy(np.asarray(a, np.float32))

    return SimpleNamespace(
        q=t(q), k=t(k), v=t(v), attn=t(attn), grid=grid, patch_size=patch, input_hw=input_hw
    )


def test_localize_dispatches_on_method_and_feature_choice():
    block_k, block_q = (5, 10, 4, 9), (11, 17, 2, 8)
    k = planted(blocks=(block_k,), seed=0)[None]
    q = planted(blocks=(block_q,), seed=1)[None]
    attn = np.full((1, 2, 20, 20), 1e-5)
    attn[0, :, 1:4, 12:18] = 0.1
    feats = _features(q, k, np.zeros_like(k), attn)
    assert [b.xyxy() for b in localize("lost", feats)] == [block_box(block_k)]
    assert [b.xyxy() for b in localize("lost", feats, which="q")] == [block_box(block_q)]
    assert localize("tokencut", feats, which="v") != localize("tokencut", feats)
    assert [b.xyxy() for b in localize("most", feats, 0, "k")] == [block_box(block_k)]
    (dino,) = localize("dino", feats, keep=0.99)
    assert dino.xyxy() == pytest.approx(block_box((1, 4, 12, 18)))
    (scaled,) = localize("tokencut", feats, orig_hw=(160, 160))
    assert scaled.xyxy() == tuple(v / 2 for v in block_box(block_k))
    assert localize("lost", feats, k=100) == localize("lost", feats)  # params pass through
    for method in METHODS:
        params = {"keep": 0.99} if method == "dino" else {}
        assert [b.source for b in localize(method, feats, **params)] == [method]
    assert set(DEFAULTS) == set(METHODS)
    with pytest.raises(ValueError, match="unknown localisation method"):
        localize("yolo", feats)
    with pytest.raises(ValueError, match="which"):
        localize("lost", feats, which="x")
    with pytest.raises(IndexError):
        localize("lost", feats, index=3)


def test_non_multiple_image_size_end_to_end():
    # 300 x 250 input, p = 16 -> grid (19, 16); a block reaching the bottom-right corner
    grid, image_hw = grid_shape((300, 250), 16), (300, 250)
    assert grid == (19, 16)
    block = (12, 19, 10, 16)
    feats = planted(grid=grid, blocks=(block,), seed=9)
    expected = (160.0, 192.0, 250.0, 300.0)  # x1 = min(256, 250), y1 = min(304, 300)
    for method in (lost, tokencut):
        (box,) = method(feats, grid, 16, image_hw)
        assert box.xyxy() == expected
    assert [b.xyxy() for b in most(feats, grid, 16, image_hw)] == [expected]
    assert math.isclose(expected[2] - expected[0], 90.0)


# --------------------------------------------------------------------------- feature handling


def test_family_presets_keep_dino_v1_exactly_and_adapt_dinov2():
    from headless.boxes.localize.handling import DINOV2, REFERENCE, resolve_handling

    assert resolve_handling("auto", "dino") is REFERENCE
    assert resolve_handling("auto", "test") is REFERENCE
    assert resolve_handling("auto", None) is REFERENCE
    assert resolve_handling("auto", "dinov2") is DINOV2
    assert resolve_handling("reference", "dinov2") is REFERENCE
    assert REFERENCE.which == "k" and REFERENCE.centre == "none" and not REFERENCE.method_params
    with pytest.raises(ValueError, match="handling must be one of"):
        resolve_handling("dinov3")
    # DINO v1 features through localize("auto") == the reference functions on the raw keys
    block = (5, 10, 4, 9)
    k = planted(blocks=(block,), seed=3) + 2.0  # a shared offset the reference keeps
    feats = _features(np.zeros_like(k)[None], k[None], np.zeros_like(k)[None],
                      np.full((1, 2, 20, 20), 1.0 / 400))
    feats.family = "dino"
    for method, fn in (("lost", lost), ("tokencut", tokencut), ("most", most)):
        assert localize(method, feats) == fn(k, GRID, P, IMAGE)


def test_centring_removes_the_shared_component_exactly():
    from headless.boxes.localize.handling import centre_tokens

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32) + 5.0
    c = centre_tokens(x, "mean")
    np.testing.assert_allclose(c, x - x.mean(0), atol=1e-6)
    p = centre_tokens(x, "project")
    u = x.mean(0) / np.linalg.norm(x.mean(0))
    np.testing.assert_allclose(p @ u, 0.0, atol=1e-4)
    np.testing.assert_allclose(p - x, -np.outer(x @ u, u), atol=1e-4)
    assert centre_tokens(x, "none") is x
    with pytest.raises(ValueError, match="centre must be"):
        centre_tokens(x, "median")


def test_artifact_tokens_are_found_and_inpainted_from_their_neighbours():
    from headless.boxes.localize.handling import artifact_tokens, inpaint

    rng = np.random.default_rng(1)
    grid = (6, 7)
    x = rng.normal(size=(42, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[0] *= 10.0  # a corner artifact
    x[3 * 7 + 3] *= 10.0  # an interior one
    bad = artifact_tokens(np.linalg.norm(x, axis=1))
    assert np.flatnonzero(bad).tolist() == [0, 24]
    y = inpaint(x, bad, grid)
    np.testing.assert_allclose(y[0], x[[1, 7, 8]].mean(0), atol=1e-6)
    nb = [16, 17, 18, 23, 25, 30, 31, 32]
    np.testing.assert_allclose(y[24], x[nb].mean(0), atol=1e-6)
    np.testing.assert_array_equal(np.delete(y, [0, 24], 0), np.delete(x, [0, 24], 0))


def test_shared_component_breaks_the_reference_and_centring_restores_it():
    # a planted object plus a large shared offset: every product positive, as DINOv2's keys
    block = (5, 10, 4, 9)
    k = planted(blocks=(block,), noise=0.05, seed=4) + 3.0
    assert (k @ k.T > 0).all()
    (ref,) = lost(k, GRID, P, IMAGE)
    assert ref.xyxy() == (0.0, 0.0, 320.0, 320.0)  # the whole image
    attn = np.full((1, 2, 20, 20), 1e-4)
    attn[0, :, 6:9, 5:8] = 0.05
    feats = _features(np.zeros_like(k)[None], k[None], np.zeros_like(k)[None], attn)
    feats.patch = torch.from_numpy(k.reshape(1, 20, 20, -1))
    feats.family = "dinov2"
    for method in ("lost", "tokencut"):
        (box,) = localize(method, feats)
        assert box.xyxy() == block_box(block), method
    assert block_box(block) in [b.xyxy() for b in localize("most", feats)]


def test_attention_seed_and_side_options():
    block = (12, 18, 2, 9)  # larger object
    k = planted(blocks=(block,), seed=5)
    att = np.full(GRID, 1e-3)
    att[13:17, 3:8] = 1.0
    (box,) = lost(k, GRID, P, IMAGE, seed="attention", attention=att, k=50,
                  mask_threshold=0.1)
    assert box.xyxy() == block_box(block)
    (box,) = tokencut(k, GRID, P, IMAGE, foreground="attention", attention=att)
    assert box.xyxy() == block_box(block)
    # attention on the background flips TokenCut's side to the background component
    att_bg = np.where(att > 0.5, 1e-3, 1.0)
    (bg,) = tokencut(k, GRID, P, IMAGE, foreground="attention", attention=att_bg)
    assert bg.xyxy() == (0.0, 0.0, 320.0, 320.0)
    with pytest.raises(ValueError, match="attention"):
        lost(k, GRID, P, IMAGE, seed="attention")
    with pytest.raises(ValueError, match="foreground must be"):
        tokencut(k, GRID, P, IMAGE, foreground="border")


def test_most_attention_pool_filter_drops_the_unattended_object():
    blocks = ((2, 7, 2, 7), (12, 18, 11, 17))
    k = planted(blocks=blocks, seed=1)
    both = sorted(b.xyxy() for b in most(k, GRID, P, IMAGE))
    assert both == sorted(block_box(b) for b in blocks)
    att = np.full(GRID, 1e-3)
    att[12:18, 11:17] = 1.0
    kept = most(k, GRID, P, IMAGE, pool_filter="attention", seed="attention", attention=att)
    assert [b.xyxy() for b in kept] == [block_box(blocks[1])]


def test_resolved_settings_name_the_preset_features_and_parameters():
    from headless.boxes.localize import resolved_settings

    s = resolved_settings("lost", "dinov2")
    assert (s["handling"], s["which"], s["centre"]) == ("dinov2", "k", "mean")
    assert s["params"]["seed"] == "attention" and s["params"]["expansion"] == "attention"
    assert resolved_settings("most", "dinov2")["which"] == "k"
    r = resolved_settings("tokencut", "dino", which="q", tau=0.3)
    assert (r["handling"], r["which"], r["centre"], r["params"]["tau"]) == (
        "reference", "q", "none", 0.3)
