"""The SAM dock's plain-Python part: keys, settings, layer features / metadata, jobs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from headless.boxes import Box
from headless.progress import run
from headless.sam import AutoMaskParams, MaskSet
from napari_dinoseg._widgets.boxes.layers import DEFAULT_FEATURES
from napari_dinoseg._widgets.common.models import ModelCache
from napari_dinoseg._widgets.sam.controller import (
    META_KEY,
    SamController,
    appended_features,
    auto_params,
    chosen_metadata,
    image_hw,
    label_scores,
    mask_features,
    masks_metadata,
    model_key,
    params_dict,
    to_image_pixels,
)


def test_keys_and_automatic_settings():
    assert model_key("vit_b", "  ", "cpu") == ("vit_b", "official", "cpu")
    assert model_key("vit_b", " /w/sam.pth ", "auto") == ("vit_b", "/w/sam.pth", "auto")
    p = auto_params(4, 16, 0.5, 0.6, 0.9, 1, 25)
    assert p == AutoMaskParams(points_per_side=4, points_per_batch=16, pred_iou_thresh=0.5,
                               stability_score_thresh=0.6, box_nms_thresh=0.9, crop_n_layers=1,
                               min_mask_region_area=25)
    assert params_dict(p)["points_per_side"] == 4 and params_dict(p)["crop_n_layers"] == 1
    with pytest.raises(ValueError, match="points_per_side"):
        auto_params(0, 16, 0.5, 0.6, 0.9, 0, 0).validate()


def test_models_are_loaded_once_per_key():
    calls = []
    cache = ModelCache(lambda *key: calls.append(key) or SimpleNamespace(key=key))
    a = cache.get(("vit_b", "official", "cpu"))
    assert cache.get(("vit_b", "official", "cpu")) is a
    cache.get(("vit_b", "random", "cpu"))
    assert calls == [("vit_b", "official", "cpu"), ("vit_b", "random", "cpu")]
    ctl = SamController()
    ctl.models = cache
    assert ctl.sam_model(("vit_b", "official", "cpu")) is a


def _maskset() -> MaskSet:
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:3, 1:4] = True
    masks[1, 4:6, 5:8] = True
    return MaskSet(masks, np.array([0.9, 0.7], np.float32), np.array([0.95, 0.8], np.float32),
                   np.array([[1, 1, 4, 3], [5, 4, 8, 6]], float), "boxes", model="tiny")


def test_masks_layer_features_and_metadata():
    ms = _maskset()
    f = mask_features(ms)
    assert list(f["index"]) == [0, 1, 2] and f["class"] == ["background", "object", "object"]
    assert np.isnan(f["predicted_iou"][0]) and np.allclose(f["predicted_iou"][1:], [0.9, 0.7])
    assert list(f["area"]) == [0, 6, 6]
    sam = SimpleNamespace(name="test_sam_tiny", weights_label="random (untrained)")
    meta = masks_metadata(ms, sam, {"boxes_layer": "b"})
    assert meta == {META_KEY: {"model": "test_sam_tiny", "weights": "random (untrained)",
                               "kind": "boxes", "n_masks": 2, "boxes_layer": "b"}}
    # the features written to the layer give the scores back for "boxes from masks"
    assert label_scores(pd.DataFrame(f)) == pytest.approx({0: np.nan, 1: 0.9, 2: 0.7},
                                                          nan_ok=True)
    assert label_scores(pd.DataFrame({"predicted_iou": [0.5, 0.25]})) == {0: 0.5, 1: 0.25}
    assert label_scores(pd.DataFrame({"area": [1]})) is None and label_scores(None) is None
    choice = SimpleNamespace(rule="iou with attention")
    bb = SimpleNamespace(name="dino_vits16", weights_label="official")
    assert chosen_metadata(choice, 3, bb) == {"dinoseg_chosen": {
        "label": 3, "rule": "iou with attention", "backbone": "dino_vits16",
        "weights": "official"}}


def test_boxes_drawn_in_another_frame_become_image_pixels():
    boxes = [Box(2, 4, 10, 8)]
    same = SimpleNamespace(scale=(1.0, 1.0), translate=(0.0, 0.0))
    assert to_image_pixels(boxes, same, same) is boxes
    # the image is shown at twice the size, shifted by 10 rows: the shapes layer is plain
    image = SimpleNamespace(scale=(2.0, 2.0), translate=(10.0, 0.0))
    (b,) = to_image_pixels(boxes, same, image)
    # edge e (shapes pixels) is world e - 0.5; image pixel edge = (world - tr) / scale + 0.5
    assert (b.x0, b.y0, b.x1, b.y1) == pytest.approx((1.25, -2.75, 5.25, -0.75))
    assert image_hw(np.zeros((6, 8, 3), np.uint8)) == (6, 8)
    assert image_hw(np.zeros((6, 8), np.uint16)) == (6, 8)


def test_tight_boxes_job_and_appended_features():
    lab = np.zeros((30, 40), np.uint16)
    lab[2:10, 3:20] = 1
    lab[15:29, 30:39] = 5
    boxes = run(SamController.tight_boxes_job(lab, {1: 0.5, 5: 0.75}))
    assert [b.xyxy() for b in boxes] == [(3, 2, 20, 10), (30, 15, 39, 29)]
    assert [b.score for b in boxes] == [0.5, 0.75] and {b.source for b in boxes} == {"sam"}
    # a layer drawn by hand: one row, none of the box columns yet, one column of its own
    old = pd.DataFrame({"note": ["mine"]})
    table = appended_features(old, boxes)
    assert len(table) == 3
    assert list(table["source"]) == [DEFAULT_FEATURES["source"], "sam", "sam"]
    assert table["note"].iloc[0] == "mine" and table["note"].iloc[1:].isna().all()
    assert list(table["score"])[1:] == [0.5, 0.75]


def test_embedding_store_only_for_files(tmp_path):
    img = tmp_path / "photo.png"
    img.write_bytes(b"x")
    store = SamController.store_for(img, cache=True)
    assert store is not None and store.root.parent == tmp_path
    assert SamController.store_for(img, cache=False) is None
    assert SamController.store_for(tmp_path / "missing.png", cache=True) is None
    assert SamController.store_for(None, cache=True) is None
