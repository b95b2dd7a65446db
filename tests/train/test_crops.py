"""Crops that keep the object in view (seed 000): guarantees, box bookkeeping, densities, cache."""

from __future__ import annotations

import math
import os
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from headless import progress
from headless.train.attention_maps import (
    AttentionMapStore,
    PackedAttentionMaps,
    backbone_key,
    clean_attention_densities,
    clean_attention_density,
    compute_attention_maps,
    decode_map,
    encode_map,
    gaussian_smooth,
    grid_shape,
    replace_max_with_mean,
    softmax_temperature,
)
from headless.train.crops import (
    AttentionDensity,
    AttentionDensityCrop,
    AttentionMap,
    LocalizedRandomResizedCrop,
    aiou,
    maiou_approx,
    maiou_estimate,
    random_box,
    random_resized_crop_window,
    thr_for_maiou,
    to_bounding_boxes,
)

THRS = (0.0, 0.01, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0)


def _u(lo: float, hi: float, g: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g))


# -- the guarantee --------------------------------------------------------------------------------
def _adversarial_case(i: int, g: torch.Generator):
    """Image sizes and boxes that stress the rule: thin, tiny, huge, at borders, out of the image,
    fractional, with scale/ratio ranges that conflict with the box."""
    height, width = int(_u(8, 500, g)), int(_u(8, 500, g))
    kind = i % 6
    if kind == 0:  # ordinary
        box = random_box(height, width, (0.02, 0.9), (0.33, 3.0), g)
    elif kind == 1:  # thin and wide / tall
        box = random_box(height, width, (0.01, 0.2), (0.05, 20.0), g)
    elif kind == 2:  # touching a border
        x0, y0, x1, y1 = random_box(height, width, (0.05, 0.6), (0.5, 2.0), g)
        box = (0.0, y0, x1 - x0, y1) if i % 4 < 2 else (x0, y0, float(width), float(height))
    elif kind == 3:  # the whole image
        box = (0.0, 0.0, float(width), float(height))
    elif kind == 4:  # partly outside the image (clipped)
        x0, y0 = _u(-50, width, g), _u(-50, height, g)
        box = (x0, y0, x0 + _u(1, width, g), y0 + _u(1, height, g))
    else:  # integer corners, tiny
        x0, y0 = int(_u(0, width - 2, g)), int(_u(0, height - 2, g))
        box = (x0, y0, x0 + 1 + int(_u(0, 4, g)), y0 + 1 + int(_u(0, 4, g)))
    return height, width, tuple(float(v) for v in box)


def test_every_crop_covers_thr_of_the_box_over_many_draws_and_shapes():
    g = torch.Generator().manual_seed(7)
    scales = ((0.08, 1.0), (0.08, 0.3), (0.5, 1.0), (0.01, 0.05))
    ratios = ((3 / 4, 4 / 3), (0.2, 5.0), (1.0, 1.0))
    checked, fallbacks = 0, 0
    for i in range(4000):
        height, width, box = _adversarial_case(i, g)
        thr = THRS[i % len(THRS)]
        crop = LocalizedRandomResizedCrop(
            32, thr, scale=scales[(i // 8) % 4], ratio=ratios[(i // 32) % 3], generator=g
        )
        win = crop.sample_window(height, width, box)
        assert 0 <= win.left and win.left + win.width <= width
        assert 0 <= win.top and win.top + win.height <= height
        assert win.width >= 1 and win.height >= 1
        clipped = (max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            assert win.fallback == "no box"
            continue
        assert aiou(win.xyxy(), clipped) >= thr, (i, height, width, box, thr, win)
        checked += 1
        fallbacks += win.fallback is not None
    assert checked > 3600
    assert fallbacks < 0.3 * checked  # the main rule does the work, not the whole-image escape


def test_guarantee_holds_on_the_transformed_boxes_of_real_samples():
    """Through the v2 pipeline: the output box, mapped back to input pixels, keeps >= thr."""
    g = torch.Generator().manual_seed(3)
    for i in range(160):
        height, width, box = _adversarial_case(i * 6, g)  # ordinary boxes
        thr = THRS[i % len(THRS)]
        image = tv_tensors.Image(torch.zeros(1, height, width, dtype=torch.uint8))
        boxes = to_bounding_boxes([box], (height, width))
        crop = LocalizedRandomResizedCrop((24, 40), thr, interpolation="nearest", generator=g)
        params = crop.make_params([image, boxes])
        out_img = crop.transform(image, params)
        out_boxes = crop.transform(boxes, params)
        assert out_img.shape[-2:] == (24, 40)
        assert tuple(out_boxes.canvas_size) == (24, 40)
        sx, sy = 40 / params["width"], 24 / params["height"]
        x0, y0, x1, y1 = out_boxes[0].tolist()
        kept = max(0.0, x1 - x0) / sx * max(0.0, y1 - y0) / sy
        area = (box[2] - box[0]) * (box[3] - box[1])
        assert kept / area >= thr - 1e-4, (i, thr, box, params)


def test_seed_area_bound_alone_does_not_guarantee_coverage_and_the_rule_handles_it():
    # The seed's bound only asks crop area >= thr * box area: a 40x200 window over a 100x100 box
    # has area 8000 >= 0.5 * 10000, yet even centred it keeps 0.4 of the box.
    assert aiou((30, -50, 70, 150), (10, 0, 110, 100)) == pytest.approx(0.4)
    # With ratios that force such shapes, every window still keeps >= thr.
    g = torch.Generator().manual_seed(0)
    crop = LocalizedRandomResizedCrop(16, 0.5, scale=(0.05, 0.3), ratio=(0.2, 5.0), generator=g)
    for _ in range(2000):
        win = crop.sample_window(300, 300, (100.0, 100.0, 200.0, 200.0))
        assert aiou(win.xyxy(), (100, 100, 200, 200)) >= 0.5


def test_seed_translation_and_scale_rules_are_used_unchanged_when_the_crop_holds_the_box():
    """Small box in the middle of a big image: no clamping, crop >= box, so the seed's rule
    applies as written: |dx| <= alpha (W_C + W_O) / 2, filling the range; scale >= thr A_O/A_I."""
    g = torch.Generator().manual_seed(11)
    height, width, box = 1000, 1000, (480.0, 470.0, 520.0, 530.0)  # 40 x 60 box, centre (500, 500)
    thr = 0.49  # alpha = 0.3
    crop = LocalizedRandomResizedCrop(8, thr, scale=(0.01, 0.04), generator=g)
    rel_dx, rel_dy, scales = [], [], []
    for _ in range(3000):
        win = crop.sample_window(height, width, box)
        assert win.width >= 40 and win.height >= 60 and win.fallback is None
        cx, cy = win.left + win.width / 2, win.top + win.height / 2
        rel_dx.append((cx - 500) / (0.3 * (win.width + 40) / 2))
        rel_dy.append((cy - 500) / (0.3 * (win.height + 60) / 2))
        scales.append(win.width * win.height / (height * width))
    rel_dx, rel_dy = np.abs(rel_dx), np.abs(rel_dy)
    # within the range (up to half a pixel of rounding), and using all of it
    assert rel_dx.max() <= 1.0 + 0.5 / (0.3 * 30) and rel_dx.max() > 0.95
    assert rel_dy.max() <= 1.0 + 0.5 / (0.3 * 40) and rel_dy.max() > 0.95
    assert abs(rel_dx.mean() - 0.5) < 0.03  # uniform offsets: E|dx| / x_r = 1/2
    # box area fraction 0.0024 < scale_min 0.01: plain U(0.01, 0.04) on the area
    assert min(scales) > 0.0095 and max(scales) < 0.0405
    assert abs(np.mean(scales) - 0.025) < 0.002


def test_scale_lower_bound_follows_thr_times_box_area():
    g = torch.Generator().manual_seed(5)
    # box area 0.36 of the image, thr 0.8 -> scale >= 0.288 > scale_min 0.08
    crop = LocalizedRandomResizedCrop(8, 0.8, generator=g)
    fr = []
    for _ in range(1000):
        win = crop.sample_window(400, 400, (80.0, 80.0, 320.0, 320.0))
        fr.append(win.width * win.height / 160000)
    assert min(fr) >= 0.288 - 0.01
    assert min(fr) < 0.33  # the bound is reached, not exceeded by a margin


def test_box_choice_union_largest_first():
    g = torch.Generator().manual_seed(0)
    boxes = to_bounding_boxes([(10, 10, 30, 30), (200, 150, 300, 260)], (300, 400))
    image = tv_tensors.Image(torch.zeros(1, 300, 400, dtype=torch.uint8))
    for how, expect in (
        ("union", (10, 10, 300, 260)),
        ("largest", (200, 150, 300, 260)),
        ("first", (10, 10, 30, 30)),
    ):
        crop = LocalizedRandomResizedCrop(16, 1.0, box_choice=how, generator=g)
        params = crop.make_params([image, boxes])
        assert params["box"] == pytest.approx(expect)
        left, top = params["left"], params["top"]
        assert aiou((left, top, left + params["width"], top + params["height"]), expect) == 1.0


# -- boxes follow the pixels ----------------------------------------------------------------------
def _rectangle_image(height: int, width: int, rect: tuple[int, int, int, int]) -> np.ndarray:
    arr = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = rect
    arr[y0:y1, x0:x1] = 255
    return arr


def _bright_bbox(img: torch.Tensor | Image.Image) -> tuple[int, int, int, int] | None:
    a = np.asarray(img) if isinstance(img, Image.Image) else img.permute(1, 2, 0).numpy()
    m = a[..., 0] > 127
    if not m.any():
        return None
    rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


@pytest.mark.parametrize("as_pil", [False, True])
@pytest.mark.parametrize("kind", ["localized", "density", "localized-nobox"])
def test_transformed_box_matches_the_drawn_rectangle(as_pil: bool, kind: str):
    g = torch.Generator().manual_seed(1 + as_pil)
    height, width, out = 240, 320, (96, 128)
    amap = np.zeros((12, 16), np.float32)
    amap[4:8, 6:11] = 1.0
    checked = 0
    for i in range(40):
        x0, y0 = int(_u(0, 200, g)), int(_u(0, 150, g))
        rect = (x0, y0, x0 + int(_u(20, 110, g)), y0 + int(_u(20, 80, g)))
        arr = _rectangle_image(height, width, rect)
        tensor = tv_tensors.Image(torch.from_numpy(arr).permute(2, 0, 1))
        image = Image.fromarray(arr) if as_pil else tensor
        if kind == "density":
            crop = AttentionDensityCrop(out, 0.5, scale=(0.1, 1.0), generator=g)
        else:
            crop = LocalizedRandomResizedCrop(out, 0.5, scale=(0.1, 1.0), generator=g)
        pipeline = v2.Compose([crop, v2.RandomHorizontalFlip(p=0.5)])
        box_list = [] if kind == "localized-nobox" else [rect]
        boxes = to_bounding_boxes(box_list if box_list else [rect], (height, width))
        sample = {"image": image, "boxes": boxes, "attention": AttentionMap(amap)}
        if kind == "localized-nobox":  # the rectangle is not "the box": crop falls back to RRC
            sample["boxes"] = to_bounding_boxes([], (height, width))
            sample["probe"] = tv_tensors.BoundingBoxes(
                torch.tensor([rect], dtype=torch.float32), format="XYXY",
                canvas_size=(height, width),
            )
        res = pipeline(sample)
        key = "probe" if kind == "localized-nobox" else "boxes"
        bx0, by0, bx1, by1 = res[key][0].tolist()
        img_out = res["image"]
        size = img_out.size[::-1] if isinstance(img_out, Image.Image) else tuple(img_out.shape[-2:])
        assert size == out
        assert isinstance(res["attention"], AttentionMap)  # passed through untouched
        bright = _bright_bbox(img_out)
        if bx1 - bx0 < 2 or by1 - by0 < 2:  # cropped out (RRC / density crops may miss it)
            continue
        assert bright is not None
        assert np.allclose(bright, (bx0, by0, bx1, by1), atol=1.0), (i, bright, res[key])
        checked += 1
    assert checked >= 25


# -- densities ------------------------------------------------------------------------------------
def test_cleaning_steps_are_exact_on_a_hand_made_map():
    m = np.array([[1.0, 2.0, 3.0], [4.0, 9.0, 6.0], [7.0, 8.0, 5.0]])
    heads = np.stack([m - 1.0, m + 1.0])  # mean over heads == m
    r = replace_max_with_mean(m)
    expect = m.copy()
    expect[1, 1] = 36.0 / 8.0  # mean of the other eight values
    assert np.array_equal(r, expect)
    assert m[1, 1] == 9.0  # input untouched

    d = clean_attention_density(heads, 2.0, sigma=0, minmax=False)
    manual = np.exp(expect / 2.0) / np.exp(expect / 2.0).sum()
    assert np.allclose(d, manual, rtol=1e-12, atol=0)
    assert d.sum() == pytest.approx(1.0, abs=1e-12)

    dm = clean_attention_density(m, 0.5, sigma=0, minmax=True)
    mm = (expect - 1.0) / 7.0
    assert np.allclose(dm, np.exp(mm / 0.5) / np.exp(mm / 0.5).sum(), rtol=1e-12)
    assert dm.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(np.argmax(dm), dm.shape) == (2, 1)  # 8 is the max once 9 is gone

    # softmax with temperature: stable for huge values, sums to 1, limits
    s = softmax_temperature(np.array([1000.0, 999.0]), 1.0)
    assert np.allclose(s, [1 / (1 + math.e**-1), 1 - 1 / (1 + math.e**-1)])
    assert softmax_temperature(m, 1e-3).max() == pytest.approx(1.0)
    assert np.allclose(softmax_temperature(m, 1e6), 1 / 9, rtol=1e-4)
    with pytest.raises(ValueError, match="temperature"):
        softmax_temperature(m, 0.0)

    # Gaussian smoothing equals scipy's reflect mode, including a sigma wider than the map
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    for shape, sigma in (((16, 12), 1.0), ((3, 2), 2.5), ((1, 7), 0.7), ((9, 9), 4.0)):
        a = rng.random(shape)
        assert np.allclose(gaussian_smooth(a, sigma), gaussian_filter(a, sigma, mode="reflect"))
    smooth = clean_attention_density(m, 1.0, sigma=1.0, minmax=False)
    by_hand = softmax_temperature(gaussian_filter(expect, 1.0, mode="reflect"), 1.0)
    assert np.allclose(smooth, by_hand)


def _planted_map() -> np.ndarray:
    a = np.full((16, 16), 0.01)
    a[10:13, 3:6] = 0.05  # the object: a 3x3 block of cells
    a[2, 13] = 0.5  # DINO's single-patch outlier, stronger than the object
    return a


def _in_cells(cx: float, cy: float, rows: tuple[int, int], cols: tuple[int, int], hw) -> bool:
    height, width = hw
    return rows[0] * height / 16 <= cy < rows[1] * height / 16 and (
        cols[0] * width / 16 <= cx < cols[1] * width / 16
    )


def test_density_centres_fall_where_the_mass_is_at_low_temperature():
    hw = (320, 480)
    g = torch.Generator().manual_seed(0)
    crop = AttentionDensityCrop(32, temperature=0.05, sigma=1.0, generator=g)
    dens = crop.density(AttentionMap(_planted_map()))
    centres = [crop.sample_centre(*hw, dens) for _ in range(2000)]
    in_block = np.mean([_in_cells(x, y, (9, 14), (2, 7), hw) for x, y in centres])
    at_spike = np.mean([_in_cells(x, y, (1, 4), (12, 15), hw) for x, y in centres])
    assert in_block > 0.95  # block +- one cell of smoothing
    assert at_spike < 0.01  # the outlier was replaced by the mean
    # windows of the full transform contain the drawn centre and mostly the block centre
    image = tv_tensors.Image(torch.zeros(3, *hw, dtype=torch.uint8))
    hits = 0
    for _ in range(300):
        p = crop.make_params([image, AttentionMap(_planted_map())])
        x, y = 4.5 * 30, 11.5 * 20  # block centre in pixels (cells are 30 x 20 px)
        hits += p["left"] <= x < p["left"] + p["width"] and p["top"] <= y < p["top"] + p["height"]
    assert hits / 300 > 0.9


def test_density_centres_are_uniform_at_high_temperature():
    hw = (320, 480)
    g = torch.Generator().manual_seed(1)
    crop = AttentionDensityCrop(32, temperature=1e4, sigma=1.0, generator=g)
    dens = crop.density(AttentionMap(_planted_map()))
    assert np.allclose(dens, 1 / 256, rtol=1e-3)
    centres = np.array([crop.sample_centre(*hw, dens) for _ in range(4000)])
    counts, _, _ = np.histogram2d(centres[:, 1], centres[:, 0], bins=4, range=[[0, 320], [0, 480]])
    expected = 4000 / 16
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 37.7  # chi-square, 15 dof, p = 0.001
    # centres are continuous inside cells, not cell corners
    assert len(np.unique(np.round(centres[:, 0], 3))) > 3900


def test_density_window_contains_its_centre_and_stays_inside_the_image():
    corner = np.zeros((8, 8))
    corner[:2, :2] = 1.0  # mass at the top-left corner: windows must be pushed inwards
    crop = AttentionDensityCrop(16, 0.1, scale=(0.3, 1.0), generator=torch.Generator())
    dens = crop.density(corner)
    for seed in range(400):
        crop.generator.manual_seed(seed)
        cx, cy = crop.sample_centre(200, 300, dens)
        crop.generator.manual_seed(seed)
        win = crop.sample_window(200, 300, dens)  # draws the same centre first
        assert 0 <= win.left and win.left + win.width <= 300
        assert 0 <= win.top and win.top + win.height <= 200
        assert win.left <= cx <= win.left + win.width and win.top <= cy <= win.top + win.height


# -- fallbacks, determinism, bad input ------------------------------------------------------------
@pytest.mark.parametrize("which", ["localized", "density"])
def test_without_box_or_map_the_crop_is_exactly_random_resized_crop(which: str):
    image = tv_tensors.Image(torch.randint(0, 255, (3, 120, 170), dtype=torch.uint8))
    reference = v2.RandomResizedCrop(48, scale=(0.2, 1.0))
    if which == "localized":
        ours = LocalizedRandomResizedCrop(48, 0.7, scale=(0.2, 1.0))
        extra = {"boxes": to_bounding_boxes([], (120, 170))}  # an empty box list
    else:
        ours = AttentionDensityCrop(48, 0.1, scale=(0.2, 1.0))
        extra = {}
    for seed in range(50):
        torch.manual_seed(seed)
        expect = reference(image)
        torch.manual_seed(seed)
        got = ours({"image": image, **extra})["image"]
        assert torch.equal(got, expect)
    win = random_resized_crop_window(120, 170, generator=torch.Generator().manual_seed(0))
    assert win.fallback is None and win.width <= 170 and win.height <= 120


def test_seeded_generators_make_crops_reproducible():
    def windows(crop_factory, seed):
        g = torch.Generator().manual_seed(seed)
        crop = crop_factory(g)
        if isinstance(crop, LocalizedRandomResizedCrop):
            return [crop.sample_window(375, 500, (100.0, 80.0, 300.0, 260.0)) for _ in range(50)]
        dens = crop.density(_planted_map())
        return [crop.sample_window(375, 500, dens) for _ in range(50)]

    for factory in (
        lambda g: LocalizedRandomResizedCrop(32, 0.6, generator=g),
        lambda g: AttentionDensityCrop(32, 0.3, generator=g),
    ):
        assert windows(factory, 123) == windows(factory, 123)
        assert windows(factory, 123) != windows(factory, 124)
    # the global RNG (what DataLoader workers seed) also reproduces
    image = tv_tensors.Image(torch.randint(0, 255, (3, 90, 120), dtype=torch.uint8))
    boxes = to_bounding_boxes([(20, 10, 70, 60)], (90, 120))
    crop = LocalizedRandomResizedCrop(24, 0.5)
    torch.manual_seed(9)
    a = crop(image, boxes)
    torch.manual_seed(9)
    b = crop(image, boxes)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="thr"):
        LocalizedRandomResizedCrop(32, 1.5)
    with pytest.raises(ValueError, match="scale"):
        LocalizedRandomResizedCrop(32, 0.5, scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="box_choice"):
        LocalizedRandomResizedCrop(32, 0.5, box_choice="middle")
    with pytest.raises(ValueError, match="temperature"):
        AttentionDensityCrop(32, 0.0)
    with pytest.raises(ValueError, match="size"):
        AttentionDensityCrop((0, 3), 1.0)
    with pytest.raises(ValueError, match="attention map"):
        AttentionMap(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        clean_attention_density(np.array([[np.nan, 1.0]]), 1.0)


# -- maIoU ----------------------------------------------------------------------------------------
def test_maiou_estimate_against_the_seeds_approximation():
    thrs = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    est = [maiou_estimate(t, n=1000) for t in thrs]
    assert est[-1] == 1.0 and maiou_approx(1.0) == 1.0 and maiou_approx(0.0) == 0.5
    assert all(e >= t for e, t in zip(est, thrs))  # every crop keeps >= thr
    assert all(b > a for a, b in zip(est, est[1:]))  # more thr, more of the box
    gaps = [abs(e - maiou_approx(t)) for e, t in zip(est, thrs)]
    # measured (n = 1000, boxes of 5-80 % of a 375 x 500 image): largest gap 0.09 near thr 0.25
    # ("not perfect but good enough", the seed says); a broken offset rule gaps by > 0.3
    assert max(gaps) < 0.1, gaps
    for t in (0.0, 0.2, 0.5, 0.9, 1.0):
        assert thr_for_maiou(maiou_approx(t)) == pytest.approx(t)


def _raccoon_boxes(root: Path) -> list[tuple[list[float], tuple[int, int]]]:
    pairs = []
    for f in sorted((root / "raccoon_voc" / "annotations").glob("*.xml")):
        r = ET.parse(f).getroot()
        size = (int(r.find("size/height").text), int(r.find("size/width").text))
        for o in r.findall("object"):
            b = o.find("bndbox")
            pairs.append(([float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")], size))
    return pairs


def test_maiou_and_guarantee_on_real_voc_boxes(shared_data):
    pairs = _raccoon_boxes(shared_data)
    assert len(pairs) == 217
    # real boxes are large (median 48 % of the image), so crops are clamped more and the mean
    # aIoU sits below the seed's curve: measured largest gap 0.135 (thr 0.25)
    for t in (0.0, 0.25, 0.5, 0.75):
        est = maiou_estimate(t, n=600, boxes=pairs)
        assert est >= t and abs(est - maiou_approx(t)) < 0.15
    # the real photos with their boxes through a v2 pipeline: every crop keeps >= thr
    g = torch.Generator().manual_seed(0)
    crop = LocalizedRandomResizedCrop(64, 0.7, generator=g)
    imgs = sorted((shared_data / "raccoon_voc" / "images").glob("*.jpg"))[:8]
    for path in imgs:
        xml = shared_data / "raccoon_voc" / "annotations" / (path.stem + ".xml")
        root = ET.parse(xml).getroot()
        rows = [
            [float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            for o in root.findall("object")
        ]
        pil = Image.open(path).convert("RGB")
        boxes = to_bounding_boxes(rows[:1], (pil.height, pil.width))
        for _ in range(20):
            params = crop.make_params([pil, boxes])
            left, top = params["left"], params["top"]
            win = (left, top, left + params["width"], top + params["height"])
            assert aiou(win, params["box"]) >= 0.7
        out_img, out_boxes = crop(pil, boxes)
        assert out_img.size == (64, 64) and out_boxes.shape == (1, 4)


# -- the attention-map cache ----------------------------------------------------------------------
def _standin_backbone(patch: int = 16):
    spec = SimpleNamespace(name="standin", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                           patch_size=patch)
    return SimpleNamespace(spec=spec, patch_size=patch, device="cpu", weights_label="planted",
                           model=None)


class _PlantedExtract:
    """Stand-in for headless.features.extract: head 0 = the patch's mean red value (so bright
    patches get attention), head 1 = a constant; records every batch shape."""

    def __init__(self, patch: int = 16) -> None:
        self.patch, self.shapes = patch, []

    def __call__(self, backbone, batch):
        self.shapes.append(tuple(batch.shape))
        red = torch.nn.functional.avg_pool2d(batch[:, :1], self.patch)[:, 0]  # (B, h, w)
        attn = torch.stack([red, torch.full_like(red, 0.25)], dim=1)
        return SimpleNamespace(attn=attn)


def _write_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate([(60, 80), (60, 80), (60, 80), (80, 60), (80, 60), (50, 50)]):
        a = np.zeros((h, w, 3), np.uint8)
        a[: h // 2, : w // 2, 0] = 255  # top-left quarter bright red
        p = folder / f"img{i}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


def test_compute_attention_maps_batches_by_shape_caches_and_never_reruns(tmp_path):
    paths = _write_images(tmp_path / "imgs")
    extract = _PlantedExtract()
    gen = compute_attention_maps(_standin_backbone(), paths, size=64, batch_size=2,
                                 cache_dir=tmp_path / "cache", extract=extract)
    seen = []
    store = progress.run(gen, seen.append)
    assert isinstance(store, AttentionMapStore)
    assert seen[-1].done == seen[-1].total == 6
    # one shape per batch: (48, 64) x3 -> 2 batches, (64, 48) x2 -> 1, (64, 64) x1 -> 1
    assert sorted(s[2:] for s in extract.shapes) == [(48, 64), (48, 64), (64, 48), (64, 64)]
    assert sorted(s[0] for s in extract.shapes) == [1, 1, 2, 2]
    assert grid_shape(60, 80, 64, 16) == (48, 64)
    for p in paths:
        m = store.get(p)
        assert m.dtype == np.float16
        h, w = np.asarray(Image.open(p)).shape[:2]
        gh, gw = grid_shape(h, w, 64, 16)
        assert m.shape == (gh // 16, gw // 16)
        # mean over heads of the planted attention: red is 1 -> (1 - 0.5) / 0.5 = 1 in the
        # top-left quarter, -1 elsewhere; head 1 is 0.25
        assert float(m[0, 0]) == pytest.approx((1.0 + 0.25) / 2, abs=0.01)
        assert float(m[-1, -1]) == pytest.approx((-1.0 + 0.25) / 2, abs=0.01)
        assert store.path_for(p).stat().st_size < 4096  # a few KB at most
    # second pass: everything cached, the model is not run
    extract.shapes.clear()
    progress.run(compute_attention_maps(_standin_backbone(), paths, size=64, batch_size=2,
                                        cache_dir=tmp_path / "cache", extract=extract))
    assert extract.shapes == []
    # an edited image is a cache miss and is recomputed alone
    st = paths[4].stat()
    os.utime(paths[4], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert store.missing(paths) == [paths[4]]
    progress.run(compute_attention_maps(_standin_backbone(), paths, size=64, batch_size=2,
                                        cache_dir=tmp_path / "cache", extract=extract))
    assert extract.shapes == [(1, 3, 64, 48)]
    # a damaged cache file is a miss, recomputed, never an error in the loader
    store.path_for(paths[1]).write_bytes(b"DSAM\x03")
    assert store.get(paths[1]) is None and store.missing(paths) == [paths[1]]
    # memory_cache: a per-process copy after the first read
    memo = AttentionMapStore(tmp_path / "cache", store.backbone_key, 64, memory_cache=True)
    first = memo.get(paths[0])
    memo.path_for(paths[0]).unlink()
    assert memo.get(paths[0]) is first and store.get(paths[0]) is None
    # another size is another cache
    other = AttentionMapStore(tmp_path / "cache", store.backbone_key, 128)
    assert other.get(paths[0]) is None
    with pytest.raises(KeyError, match="compute_attention_maps"):
        other.require(paths[0])


def test_cache_file_format_round_trips():
    m = np.arange(12, dtype=np.float32).reshape(3, 4) / 100
    data = encode_map(m, (375, 500))
    assert len(data) == 4 + 12 + 2 * 12  # magic, header, float16 values
    back, hw = decode_map(data)
    assert back.dtype == np.float16 and hw == (375, 500)
    assert np.array_equal(back, m.astype(np.float16))
    for bad in (b"", b"NOPE" + data[4:], data[:-2]):
        with pytest.raises(ValueError):
            decode_map(bad)


def test_store_feeds_the_density_crop_in_dataloader_workers(tmp_path):
    paths = _write_images(tmp_path / "imgs")
    store = progress.run(compute_attention_maps(
        _standin_backbone(), paths, size=64, batch_size=4, cache_dir=tmp_path / "cache",
        extract=_PlantedExtract()))
    store = pickle.loads(pickle.dumps(store))  # what a worker receives (spawn start method)
    packed = pickle.loads(pickle.dumps(store.pack(paths)))
    assert len(packed) == len(paths)
    for i, p in enumerate(paths):
        assert np.array_equal(packed.map(i), store.get(p))
        assert torch.equal(packed[i], store.attention_map(p))

    crop = AttentionDensityCrop(16, temperature=0.05, scale=(0.05, 0.1))
    densities = packed.densities(*crop.clean_params)
    pipeline = v2.Compose([crop, v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize([0.5] * 3, [0.5] * 3)])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths) * 8

        def __getitem__(self, i):
            k = i % len(paths)
            a = np.asarray(Image.open(paths[k]).convert("RGB"))
            img = tv_tensors.Image(torch.from_numpy(a).permute(2, 0, 1))
            # the three lookups: prepared density, packed raw map, cache file
            attention = (densities[k], packed[k], store.attention_map(paths[k]))[i % 3]
            out = pipeline({"image": img, "attention": attention})
            return out["image"]

    loader = torch.utils.data.DataLoader(DS(), batch_size=8, num_workers=2)
    batches = torch.cat(list(loader))
    assert batches.shape == (48, 3, 16, 16)
    # small crops centred in the bright top-left quarter are mostly red (+1 after normalising)
    red_fraction = (batches[:, 0] > 0.9).float().mean().item()
    assert red_fraction > 0.8


def test_prepared_densities_equal_per_item_cleaning_and_must_match_the_crop():
    rng = np.random.default_rng(0)
    maps = [rng.random((10, 14)).astype(np.float16) for _ in range(5)]
    maps += [None, rng.random((14, 10)).astype(np.float16), np.ones((3, 3), np.float16)]
    stack = np.stack([m.astype(np.float64) for m in maps[:5]])
    for sigma, minmax in ((1.5, True), (0.0, False)):
        batched = clean_attention_densities(stack, 0.2, sigma=sigma, minmax=minmax)
        for m, b in zip(maps[:5], batched):
            assert np.allclose(b, clean_attention_density(m, 0.2, sigma=sigma, minmax=minmax))
    crop = AttentionDensityCrop(32, 0.2, sigma=1.5)
    dens = PackedAttentionMaps(maps).densities(*crop.clean_params)
    for i, m in enumerate(maps):
        if m is None:
            assert dens[i] is None
            continue
        assert isinstance(dens[i], AttentionDensity)
        expect = clean_attention_density(m, 0.2, sigma=1.5)
        assert np.allclose(crop.density(dens[i]), expect, rtol=1e-5, atol=1e-8)
    assert np.allclose(dens.map(7), 1 / 9)  # a constant map: uniform density
    with pytest.raises(ValueError, match="temperature, sigma, minmax"):
        AttentionDensityCrop(32, 0.3, sigma=1.5).density(dens[0])
    with pytest.raises(ValueError, match="densities already"):
        dens.densities(0.2)


def test_pack_names_missing_maps_or_leaves_gaps(tmp_path):
    paths = _write_images(tmp_path / "imgs")
    store = progress.run(compute_attention_maps(
        _standin_backbone(), paths[:4], size=64, cache_dir=tmp_path / "cache",
        extract=_PlantedExtract()))
    with pytest.raises(KeyError, match="img4.png"):
        store.pack(paths)
    packed = store.pack(paths, strict=False)
    assert [packed[i] is None for i in range(6)] == [False] * 4 + [True] * 2
    assert packed.buffer.dtype == np.float16 and packed.buffer.size == 3 * 4 * 3 + 4 * 3
    # a sample without a map falls back to RandomResizedCrop
    crop = AttentionDensityCrop(8, 0.1)
    params = crop.make_params([tv_tensors.Image(torch.zeros(3, 80, 60))])
    assert params["fallback"] == "no map"


def test_compute_attention_maps_with_a_real_tiny_vit(tmp_path):
    from headless.features.backbones import load_backbone
    from headless.features.forward import extract
    from headless.train.attention_maps.compute import _load_resized

    bb = load_backbone("test_dino_tiny16", weights="random")
    paths = _write_images(tmp_path / "imgs")[2:5]
    store = progress.run(compute_attention_maps(bb, paths, size=64, batch_size=2,
                                                cache_dir=tmp_path / "c"))
    for p in paths:
        h, w = np.asarray(Image.open(p)).shape[:2]
        x = _load_resized(p, grid_shape(h, w, 64, 16), bb.spec.mean, bb.spec.std)
        direct = extract(bb, x[None]).attn[0].mean(0).numpy()
        got = store.get(p).astype(np.float32)
        assert got.shape == direct.shape
        assert np.allclose(got, direct, rtol=2e-3, atol=1e-4)
        assert 0 < got.sum() <= 1.0 + 1e-2  # CLS attention over patches: a sub-distribution
    # other weights of the same architecture (and label) do not reuse those maps
    bb2 = load_backbone("test_dino_tiny16", weights="random")
    assert backbone_key(bb2) == store.backbone_key  # same deterministic random draw
    with torch.no_grad():
        list(bb2.model.parameters())[-1].add_(0.01)  # e.g. one more training step
    other = AttentionMapStore(tmp_path / "c", backbone_key(bb2), 64)
    assert other.get(paths[0]) is None


def test_missing_image_is_named(tmp_path):
    with pytest.raises(Exception, match="nope.png"):
        progress.run(compute_attention_maps(_standin_backbone(), [tmp_path / "nope.png"],
                                            extract=_PlantedExtract()))
