"""headless.sam: weights, embedding cache, automatic / box masks, masks <-> boxes, one-mask rule.

SAM runs as the tiny random-initialised architecture built from segment_anything's real classes,
saved in the official key layout and loaded through the real loading path. Masks of random
weights are meaningless, so behaviour is checked against segment_anything's own generator and
predictor, and the pure-numpy parts on hand-made and real (nuclei) masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headless import sam as S
from headless.boxes import Box
from headless.progress import run

AUTO_ALL = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)  # keep random-weight masks


@pytest.fixture
def ckpt(tmp_path):
    return S.save_random_checkpoint(tmp_path / "tiny.pth")


@pytest.fixture
def tiny(ckpt):
    return S.load_sam("test_sam_tiny", ckpt)


def _image(h=60, w=80, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _count_encoder(model):
    calls = []
    model.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    return calls


# -- registry and weights ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_registry_builds_the_official_architectures(name):
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = S.build_sam_model(S.get_spec(name)).state_dict()
        ref = sam_model_registry[name]().state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)
    spec = S.get_spec(name)
    assert spec.url == f"https://dl.fbaipublicfiles.com/segment_anything/{spec.filename}"
    assert spec.filename == {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth",
                             "vit_h": "sam_vit_h_4b8939.pth"}[name]


def test_tiny_checkpoint_has_the_official_key_layout(ckpt):
    from segment_anything import sam_model_registry

    tiny = torch.load(ckpt, weights_only=True)
    with torch.device("meta"):
        vit_b = sam_model_registry["vit_b"]().state_dict()
    # depth 2: blocks 0 and 1 of ViT-B's key names, every other key identical
    assert set(tiny) <= set(vit_b)
    non_block = {k for k in vit_b if ".blocks." not in k or "image_encoder" not in k}
    assert {k for k in tiny if k in non_block} == non_block


def test_load_through_the_official_cache_path_and_safetensors(tmp_path):
    path = S.save_random_checkpoint(seed=3)  # into the (test) cache folder
    assert path == S.weights_dir() / "sam_test_tiny.pth"
    m = S.load_sam("test_sam_tiny")  # weights="official" -> cache folder
    saved = torch.load(path, weights_only=True)
    for k, v in m.model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    st = S.save_random_checkpoint(tmp_path / "t.safetensors", seed=3, safetensors=True)
    m2 = S.load_sam("test_sam_tiny", st)
    for k, v in m2.model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert not m.is_random and m.weights_label == str(path)


def test_random_weights_are_seeded():
    a = S.load_sam("test_sam_tiny", "random", seed=1)
    b = S.load_sam("test_sam_tiny", "random", seed=1)
    c = S.load_sam("test_sam_tiny", "random", seed=2)
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.is_random and a.weights_label == "random (untrained)"


def test_missing_checkpoint_names_url_and_cache_path():
    with pytest.raises(S.SamWeightsError) as err:
        S.load_sam("vit_b", "official", download=False)
    msg = str(err.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in msg
    assert str(S.weights_dir() / "sam_vit_b_01ec64.pth") in msg
    assert isinstance(err.value, FileNotFoundError)


def test_failed_download_names_url_path_and_cause(monkeypatch):
    import urllib.error

    import torch.hub

    def offline(url, dst, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(S.SamWeightsError) as err:
        S.load_sam("vit_h", "official", download=True)
    msg = str(err.value)
    assert "sam_vit_h_4b8939.pth" in msg and "no network" in msg
    assert str(S.weights_dir()) in msg
    assert not (S.weights_dir() / "sam_vit_h_4b8939.pth").exists()


def test_missing_local_file():
    with pytest.raises(S.SamWeightsError, match="nope.pth"):
        S.load_sam("vit_b", "/no/such/nope.pth")


EXECUTED: list[int] = []


def _payload():
    EXECUTED.append(1)
    return {}


class _Evil:
    def __reduce__(self):
        return (_payload, ())


def test_loader_refuses_pickled_objects_without_running_them(tmp_path, ckpt):
    state = torch.load(ckpt, weights_only=True)
    state["evil"] = _Evil()
    bad = tmp_path / "evil.pth"
    torch.save(state, bad)
    EXECUTED.clear()
    with pytest.raises(S.CheckpointError, match="weights_only"):
        S.load_sam("test_sam_tiny", bad)
    assert EXECUTED == []
    torch.load(bad, weights_only=False)  # the control: a plain unpickle runs the payload
    assert EXECUTED == [1]


def test_wrong_layout_names_the_keys(tmp_path, ckpt):
    with pytest.raises(S.CheckpointError, match="not a SAM vit_b checkpoint"):
        S.load_sam("vit_b", ckpt)
    state = torch.load(ckpt, weights_only=True)
    del state["mask_decoder.iou_token.weight"]
    p = tmp_path / "partial.pth"
    torch.save(state, p)
    with pytest.raises(S.CheckpointError, match="mask_decoder.iou_token.weight"):
        S.load_sam("test_sam_tiny", p)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(S.CheckpointError, match="junk.pth"):
        S.load_sam("test_sam_tiny", junk)


def test_unknown_model():
    with pytest.raises(ValueError, match="vit_x"):
        S.load_sam("vit_x", "random")


# -- images ---------------------------------------------------------------------------------------
def test_to_uint8_rgb_any_mode():
    grey16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    out = S.to_uint8_rgb(grey16)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 2])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    assert np.array_equal(S.to_uint8_rgb(rgba)[..., 0], np.full((2, 2), 200))
    img = _image()
    assert np.array_equal(S.to_uint8_rgb(img), img)  # uint8 RGB passes unchanged


# -- embedding cache ----------------------------------------------------------------------------
def test_embedding_computed_once_per_image(tiny, tmp_path):
    from headless.store import ProjectStore

    calls = _count_encoder(tiny)
    img = _image()
    store = ProjectStore(tmp_path / "proj")
    a = run(S.automatic_masks(tiny, img, S.AutoMaskParams(points_per_side=4, **AUTO_ALL), store))
    b = run(S.masks_from_boxes(tiny, img, [Box(5, 5, 40, 30)], store))
    a2 = run(S.automatic_masks(tiny, img, S.AutoMaskParams(points_per_side=5, **AUTO_ALL), store))
    assert len(calls) == 1 and tiny.encoder_passes == 1
    run(S.masks_from_boxes(tiny, _image(seed=1), [Box(5, 5, 40, 30)], store))
    assert len(calls) == 2  # other content: one more pass
    assert len(list((tmp_path / "proj" / "cache" / S.EMBEDDING_CACHE_KIND).glob("*.npz"))) == 2

    # a fresh model (new session) with the same weights reads the disk cache: no pass at all
    fresh = S.load_sam("test_sam_tiny", tiny.weights_label)
    fresh_calls = _count_encoder(fresh)
    a_again = run(S.automatic_masks(fresh, img, S.AutoMaskParams(points_per_side=4, **AUTO_ALL),
                                    store))
    b_again = run(S.masks_from_boxes(fresh, img, [Box(5, 5, 40, 30)], store))
    assert fresh_calls == []
    assert np.array_equal(a.masks, a_again.masks)
    assert np.array_equal(b.masks, b_again.masks)
    assert np.allclose(b.predicted_iou, b_again.predicted_iou)
    assert a2.n >= 1

    # other weights never reuse the embedding
    other = S.load_sam("test_sam_tiny", "random", seed=9)
    other_calls = _count_encoder(other)
    run(S.masks_from_boxes(other, img, [Box(5, 5, 40, 30)], store))
    assert len(other_calls) == 1


def test_damaged_disk_cache_is_recomputed(tiny, tmp_path):
    from headless.store import ProjectStore

    store = ProjectStore(tmp_path / "proj")
    img = _image()
    first = run(S.masks_from_boxes(tiny, img, [Box(0, 0, 30, 30)], store))
    for f in (tmp_path / "proj" / "cache" / S.EMBEDDING_CACHE_KIND).glob("*.npz"):
        f.write_bytes(b"garbage")
    fresh = S.load_sam("test_sam_tiny", tiny.weights_label)
    again = run(S.masks_from_boxes(fresh, img, [Box(0, 0, 30, 30)], store))
    assert fresh.encoder_passes == 1
    assert np.array_equal(first.masks, again.masks)


# -- automatic masks ------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(points_per_side=4, box_nms_thresh=1.0, points_per_batch=7, **AUTO_ALL),
    dict(points_per_side=3, box_nms_thresh=0.99, crop_n_layers=1, **AUTO_ALL),
])
def test_automatic_masks_equal_segment_anythings_generator(tiny, kw):
    from segment_anything import SamAutomaticMaskGenerator

    img = _image(40, 50)
    ours = run(S.automatic_masks(tiny, img, S.AutoMaskParams(**kw)))
    ref = SamAutomaticMaskGenerator(tiny.model, **kw).generate(img)
    ref = [a for a in ref if a["area"] > 0]
    assert ours.n == len(ref) > 0
    key = {a["segmentation"].tobytes(): a for a in ref}
    for i in range(ours.n):
        a = key[ours.masks[i].tobytes()]
        assert ours.predicted_iou[i] == pytest.approx(a["predicted_iou"], abs=1e-6)
        assert ours.stability_score[i] == pytest.approx(a["stability_score"], abs=1e-6)
        assert np.allclose(ours.prompts[i], a["point_coords"][0])


@pytest.mark.parametrize("image", [
    _image(37, 53),
    (np.random.default_rng(1).random((41, 29)) * 60000).astype(np.uint16),  # grey 16-bit
    np.random.default_rng(2).random((33, 47, 4)).astype(np.float32) * 7 - 3,  # RGBA float
])
def test_automatic_masks_have_the_image_shape_and_one_label_each(tiny, image):
    ms = run(S.automatic_masks(tiny, image, S.AutoMaskParams(points_per_side=4,
                                                             box_nms_thresh=1.0, **AUTO_ALL)))
    h, w = image.shape[:2]
    assert ms.n > 1 and ms.masks.shape == (ms.n, h, w) and ms.masks.dtype == bool
    assert ms.kind == "automatic"
    assert np.all(np.diff(ms.areas) <= 0) and ms.areas.min() > 0  # largest first, none empty
    lab = ms.labels()
    assert lab.shape == (h, w)
    assert set(np.unique(lab)) - {0} <= set(range(1, ms.n + 1))
    for k in np.unique(lab[lab > 0]):
        assert ms.masks[k - 1][lab == k].all()  # a label's pixels belong to its mask
    t = ms.table()
    assert len(t["label"]) == ms.n and np.array_equal(t["label"], np.arange(1, ms.n + 1))
    assert np.allclose(t["predicted_iou"], ms.predicted_iou)


def test_automatic_filters_apply(tiny):
    img = _image()
    loose = run(S.automatic_masks(tiny, img, S.AutoMaskParams(points_per_side=4,
                                                              box_nms_thresh=1.0, **AUTO_ALL)))
    cut = float(np.median(loose.predicted_iou))
    strict = run(S.automatic_masks(tiny, img, S.AutoMaskParams(
        points_per_side=4, box_nms_thresh=1.0, pred_iou_thresh=cut, stability_score_thresh=0)))
    assert 0 < strict.n < loose.n
    assert (strict.predicted_iou > cut).all()


def test_min_region_area_cleans_every_mask(tiny):
    img = _image()
    p = S.AutoMaskParams(points_per_side=4, box_nms_thresh=1.0, min_mask_region_area=60,
                         **AUTO_ALL)
    ms = run(S.automatic_masks(tiny, img, p))
    assert ms.n > 0
    for m in ms.masks:  # no hole or island below the area is left
        assert not S.remove_small_regions(m, 60)[1]


def test_bad_params():
    with pytest.raises(ValueError, match="pred_iou_thresh"):
        S.AutoMaskParams(pred_iou_thresh=1.5).validate()
    with pytest.raises(ValueError, match="points_per_side"):
        S.AutoMaskParams(points_per_side=0).validate()


def test_remove_small_regions():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5, 5] = False  # 1-pixel hole
    m[16:18, 16:18] = True  # 4-pixel island
    out, changed = S.remove_small_regions(m, 5)
    ref = np.zeros((20, 20), bool)
    ref[2:12, 2:12] = True
    assert changed and np.array_equal(out, ref)
    same, changed = S.remove_small_regions(ref, 5)
    assert not changed and np.array_equal(same, ref)
    tiny_only = np.zeros((10, 10), bool)
    tiny_only[1, 1] = True
    tiny_only[5:7, 5] = True
    kept, _ = S.remove_small_regions(tiny_only, 50)  # all islands small: keep the largest
    assert kept.sum() == 2 and kept[5:7, 5].all()


# -- box prompts ----------------------------------------------------------------------------------
def test_one_mask_per_box_matching_sam_predictor(tiny):
    from segment_anything import SamPredictor

    img = _image()
    boxes = [Box(5, 5, 40, 30, label="cat"), Box(30, 10, 75, 55), Box(0, 0, 80, 60)]
    ms = run(S.masks_from_boxes(tiny, img, boxes, batch_size=2))
    assert ms.n == 3 and ms.masks.shape == (3, 60, 80) and ms.kind == "boxes"
    assert ms.classes == ["cat", "object", "object"]
    assert np.allclose(ms.prompts, [b.xyxy() for b in boxes])
    pred = SamPredictor(tiny.model)
    pred.set_image(img)
    for i, b in enumerate(boxes):
        masks, iou, _ = pred.predict(box=np.array(b.xyxy()), multimask_output=False)
        assert np.mean(masks[0] != ms.masks[i]) < 1e-3
        assert ms.predicted_iou[i] == pytest.approx(float(iou[0]), abs=1e-5)
    assert set(np.unique(ms.labels())) - {0} <= {1, 2, 3}


def test_zero_boxes_and_boxes_outside(tiny):
    img = _image()
    calls = _count_encoder(tiny)
    empty = run(S.masks_from_boxes(tiny, img, []))
    assert empty.n == 0 and empty.masks.shape == (0, 60, 80) and calls == []
    assert empty.labels().shape == (60, 80) and not empty.labels().any()

    sticking_out = run(S.masks_from_boxes(tiny, img, [Box(-20, -10, 30, 25), Box(90, 70, 99, 80)]))
    clipped = run(S.masks_from_boxes(tiny, img, [Box(0, 0, 30, 25)]))
    assert sticking_out.n == 2
    assert np.array_equal(sticking_out.masks[0], clipped.masks[0])  # clipped before prompting
    assert np.allclose(sticking_out.prompts[0], [0, 0, 30, 25])
    assert sticking_out.empty_prompts == [1] and not sticking_out.masks[1].any()


def test_masks_from_real_nuclei_boxes(tiny, shared_data):
    import tifffile

    img = tifffile.imread(shared_data / "nuclei" / "img2d.tif")
    gt = tifffile.imread(shared_data / "nuclei" / "mask2d.tif")
    boxes = S.boxes_from_labels(gt, source="gt")[:40]
    ms = run(S.masks_from_boxes(tiny, img, boxes))  # 16-bit grey microscopy
    assert ms.n == len(boxes) == 40 and ms.empty_prompts == []
    assert ms.masks.shape[1:] == img.shape[:2]


# -- masks <-> boxes <-> labels -------------------------------------------------------------------
def test_masks_to_boxes_exact_on_hand_made_masks():
    m = np.zeros((3, 10, 12), bool)
    m[0, 2:5, 3:9] = True  # rows 2..4, cols 3..8
    m[1, 0, 0] = True  # single pixel
    m[1, 9, 11] = True  # + far corner: box spans the image
    boxes = S.masks_to_boxes(m, scores=[0.5, 0.7, 0.9])
    assert [b.xyxy() for b in boxes] == [(3, 2, 9, 5), (0, 0, 12, 10)]  # empty mask: no box
    assert [b.score for b in boxes] == [0.5, 0.7]
    assert S.mask_to_box(m[2]) is None
    one = np.zeros((5, 5), bool)
    one[4, 4] = True
    assert S.mask_to_box(one).xyxy() == (4, 4, 5, 5)
    assert S.mask_to_box(one).area == 1


def test_boxes_from_labels_exact_on_real_nuclei(shared_data):
    import tifffile
    from skimage.measure import regionprops

    gt = tifffile.imread(shared_data / "nuclei" / "mask2d.tif")
    boxes = S.boxes_from_labels(gt)
    props = sorted(regionprops(gt.astype(np.int64)), key=lambda p: p.label)
    assert len(boxes) == len(props) == 125
    for b, p in zip(boxes, props):
        r0, c0, r1, c1 = p.bbox
        assert b.xyxy() == (c0, r0, c1, r1)
    values, masks = S.masks_from_labels(gt)
    assert [b.xyxy() for b in S.masks_to_boxes(masks)] == [b.xyxy() for b in boxes]


def test_boxes_from_sparse_labels_with_scores():
    lab = np.zeros((8, 8), np.int32)
    lab[1:3, 1:4] = 7
    lab[5:8, 6] = 1000
    boxes = S.boxes_from_labels(lab, scores={7: 0.25, 1000: float("nan")})
    assert [b.xyxy() for b in boxes] == [(1, 1, 4, 3), (6, 5, 7, 8)]
    assert boxes[0].score == 0.25 and boxes[1].score is None
    assert S.boxes_from_labels(np.zeros((4, 4), np.uint8)) == []


def test_labels_from_masks_smaller_on_top():
    m = np.zeros((3, 6, 6), bool)
    m[0, 2:4, 2:4] = True  # small, inside mask 1
    m[1] = True  # whole image
    m[2, 0, 0:2] = True  # 2 pixels, overlapping mask 1 only
    lab = S.labels_from_masks(m)
    ref = np.full((6, 6), 2, np.uint16)
    ref[2:4, 2:4] = 1
    ref[0, 0:2] = 3
    assert np.array_equal(lab, ref)
    assert lab.dtype == np.uint16


# -- one mask per image ---------------------------------------------------------------------------
def _two_squares():
    img = np.full((40, 60, 3), 0.5, np.float32)
    img[5:15, 5:20] = [1.0, 0.0, 0.0]  # red
    img[20:35, 30:50] = [0.0, 0.0, 1.0]  # blue
    masks = np.zeros((4, 40, 60), bool)
    masks[0] = True  # whole image (largest first, like automatic masks)
    masks[1, 20:35, 30:50] = True  # blue square
    masks[2, 5:15, 5:20] = True  # red square
    return img, masks


def test_choose_mask_with_a_classifier_picks_the_class_logit():
    img, masks = _two_squares()
    seen = []

    def classifier(crops):
        seen.extend(crops)
        return np.array([[c[..., 0].mean(), c[..., 2].mean()] for c in crops])  # red, blue

    red = S.choose_mask(masks, img, classifier=classifier, class_index=0)
    assert red.index == 2 and red.rule == "classifier"
    assert red.box.xyxy() == (5, 5, 20, 15)
    assert np.array_equal(seen[2], img[5:15, 5:20])  # crops are the tight-box crops
    assert len(seen) == 3  # the empty mask 3 is never scored
    blue = S.choose_mask(masks, img, classifier=lambda c: torch.tensor(classifier(c)),
                         class_index=1)
    assert blue.index == 1 and np.isneginf(blue.scores[3])
    with pytest.raises(ValueError, match="class index 5"):
        S.choose_mask(masks, img, classifier=classifier, class_index=5)


def test_crop_classifier_wraps_a_torch_module():
    img, masks = _two_squares()
    # a "network" whose logits are the mean normalised red and blue of the resized crop
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    clf = S.crop_classifier(net, size=32, mean=(0, 0, 0), std=(1, 1, 1), batch_size=2)
    logits = clf(S.mask_crops(img, masks[:3]))
    assert logits.shape == (3, 3)
    assert logits[2] == pytest.approx([1.0, 0.0, 0.0], abs=1e-5)  # the red crop
    assert S.choose_mask(masks, img, classifier=clf, class_index=0).index == 2
    assert S.choose_mask(masks, img, classifier=clf, class_index=2).index == 1


def test_choose_mask_by_attention_picks_the_planted_mask():
    img, masks = _two_squares()
    attn = np.full((40, 60), 0.01)
    attn[20:35, 30:50] = 1.0  # DINO looks at the blue square
    choice = S.choose_mask(masks, attention=attn, keep=0.6)
    assert choice.index == 1 and choice.rule == "attention"
    assert choice.box.xyxy() == (30, 20, 50, 35)
    att_mask = S.threshold_attention(attn, 0.6)
    inter = (masks[1] & att_mask).sum()
    assert choice.scores[1] == pytest.approx(inter / (masks[1] | att_mask).sum())
    assert np.isneginf(choice.scores[3])


def test_attention_rule_breaks_ties_by_mean_attention():
    att_mask = np.zeros((10, 10), bool)
    att_mask[2:8, 2:8] = True
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 2:8, 2:5] = True  # left half: IoU 0.5
    masks[1, 2:8, 5:8] = True  # right half: IoU 0.5
    attn = np.zeros((10, 10))
    attn[:, 5:] = 1.0
    assert S.choose_mask(masks, attention=attn, attention_mask=att_mask).index == 1
    assert S.choose_mask(masks, attention=attn[:, ::-1], attention_mask=att_mask).index == 0
    c = S.choose_mask(masks, attention=attn, attention_mask=att_mask)
    assert c.scores[0] == c.scores[1] == pytest.approx(0.5)


def test_choose_mask_bad_input():
    img, masks = _two_squares()
    with pytest.raises(ValueError, match="no masks"):
        S.choose_mask(np.zeros((0, 4, 4), bool), attention=np.ones((4, 4)))
    with pytest.raises(ValueError, match="classifier or a DINO attention"):
        S.choose_mask(masks)
    with pytest.raises(ValueError, match="shape"):
        S.choose_mask(masks, attention=np.ones((5, 5)))


def test_attention_for_image_maps_patches_to_pixels():
    from headless.features.backbones import load_backbone
    from headless.features.forward import attention_mask, extract_image

    bb = load_backbone("test_dino_tiny16", "random")
    img = _image(70, 90)
    attn, mask = S.attention_for_image(bb, img, keep=0.6)
    assert attn.shape == mask.shape == (70, 90) and mask.dtype == bool
    grid = extract_image(bb, img).attn[0].mean(0).numpy()
    gmask = attention_mask(grid, 0.6)
    rows, cols = np.mgrid[0:70, 0:90]
    assert np.array_equal(mask, gmask[rows // 16, cols // 16])
    assert np.allclose(attn, grid[rows // 16, cols // 16])
    # the whole rule end to end: the mask equal to the attention mask wins
    masks = np.stack([np.ones_like(mask), mask, ~mask])
    assert S.choose_mask(masks, attention=attn, attention_mask=mask).index == 1
