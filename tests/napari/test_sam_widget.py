"""The SAM dock in a real napari viewer (Xvfb): masks layers, masks from boxes, boxes from masks."""

from __future__ import annotations

import numpy as np
import pytest

from headless import sam as S
from headless.boxes import Box
from headless.progress import run

pytestmark = pytest.mark.gui


@pytest.fixture
def image_file(tmp_path):
    import imageio.v3 as iio

    img = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    iio.imwrite(path, img)
    return path, img


@pytest.fixture
def dock(make_napari_viewer, monkeypatch, tmp_path):
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    from napari_dinoseg._widgets.sam.panel import SamWidget

    ckpt = S.save_random_checkpoint(tmp_path / "tiny.pth")
    viewer = make_napari_viewer(show=True)
    widget = SamWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_combo.setCurrentText("test_sam_tiny")
    widget.weights_edit.setText(str(ckpt))
    widget.device_combo.setCurrentText("cpu")
    widget.points_spin.setValue(4)
    widget.iou_spin.setValue(0.0)
    widget.stab_spin.setValue(0.0)
    widget.nms_spin.setValue(1.0)
    return viewer, widget, ckpt


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def test_automatic_masks_layer_with_scores(dock, image_file):
    viewer, widget, ckpt = dock
    path, img = image_file
    viewer.open(str(path))
    assert widget.image_combo.currentText() == "photo"
    widget.automatic()
    layer = viewer.layers["SAM masks · photo"]
    ref = run(S.automatic_masks(S.load_sam("test_sam_tiny", ckpt), img, widget.auto_params()))
    assert type(layer).__name__ == "Labels" and layer.data.shape == (48, 64)
    assert np.array_equal(layer.data, ref.labels())
    f = layer.features
    assert list(f["index"]) == list(range(ref.n + 1))  # row 0 = background
    assert np.allclose(f["predicted_iou"][1:], ref.predicted_iou)
    assert np.allclose(f["stability_score"][1:], ref.stability_score)
    assert layer.metadata["dinoseg_sam"]["n_masks"] == ref.n
    assert f"{ref.n} mask(s)" in widget.status.text()
    prov = layer.metadata["dinoseg"]  # image, model and weights: metadata, not the name
    assert prov["image"] == "photo" and prov["model"] == "SAM test_sam_tiny"
    assert widget.labels_combo.currentText() == layer.name  # the next step uses these masks
    # the embedding was cached in the image's project folder
    cache = path.parent / ".dinoseg" / "cache" / S.EMBEDDING_CACHE_KIND
    assert len(list(cache.glob("*.npz"))) == 1
    # a re-run adds a new layer: a layer the user may have edited is never overwritten
    widget.automatic()
    again = [ly for ly in viewer.layers if ly.name.startswith("SAM masks · photo")]
    assert len(again) == 2 and widget.labels_combo.currentText() == again[-1].name
    # filters that remove every candidate: no empty layer, and a hint naming the filters
    widget.iou_spin.setValue(1.0)
    n_layers = len(viewer.layers)
    widget.automatic()
    assert len(viewer.layers) == n_layers
    assert "0 masks" in widget.status.text() and "predicted-IoU > 1" in widget.status.text()


def test_masks_from_boxes_one_label_per_rectangle(dock, image_file):
    from napari_dinoseg._widgets.boxes.layers import box_to_rectangle

    viewer, widget, ckpt = dock
    path, img = image_file
    viewer.add_image(img, name="photo")
    boxes = [Box(3, 4, 30, 40), Box(35, 10, 60, 30)]
    viewer.add_shapes([box_to_rectangle(b) for b in boxes], shape_type="rectangle",
                      name="my boxes")
    assert widget.shapes_combo.currentText() == "my boxes"
    widget.masks_from_boxes()
    layer = viewer.layers["SAM box masks · photo"]
    ref = run(S.masks_from_boxes(S.load_sam("test_sam_tiny", ckpt), img, boxes))
    assert np.array_equal(layer.data, ref.labels())
    assert list(layer.features["index"]) == [0, 1, 2]
    assert np.allclose(layer.features["predicted_iou"][1:], ref.predicted_iou)
    assert np.allclose(widget.last_result.prompts, [b.xyxy() for b in boxes])


def test_boxes_from_masks_tight_and_appended(dock):
    from napari_dinoseg._widgets.boxes.layers import box_to_rectangle, layer_to_boxes

    viewer, widget, _ = dock
    lab = np.zeros((30, 40), np.uint16)
    lab[2:10, 3:20] = 1
    lab[15:29, 30:39] = 5
    viewer.add_labels(lab, name="masks")
    widget.boxes_from_masks()  # into a new layer
    new = viewer.layers["mask boxes · masks"]
    assert [b.xyxy() for b in layer_to_boxes(new)] == [(3, 2, 20, 10), (30, 15, 39, 29)]
    assert all(b.source == "sam" for b in layer_to_boxes(new))
    assert np.allclose(new.data[0], box_to_rectangle(Box(3, 2, 20, 10)))

    user = viewer.add_shapes([box_to_rectangle(Box(1, 1, 5, 5))], shape_type="rectangle",
                             name="user boxes")
    widget.target_combo.setCurrentText("user boxes")
    widget.labels_combo.setCurrentText("masks")
    widget.boxes_from_masks()
    got = layer_to_boxes(user)
    assert [b.xyxy() for b in got] == [(1, 1, 5, 5), (3, 2, 20, 10), (30, 15, 39, 29)]
    assert [b.source for b in got] == ["user", "sam", "sam"]  # the user's box is untouched


def test_choose_mask_by_attention_selects_the_planted_label(dock):
    from headless.features.backbones import load_backbone
    from napari_dinoseg._widgets.boxes.layers import layer_to_boxes

    viewer, widget, _ = dock
    img = (np.random.default_rng(3).random((70, 90, 3)) * 255).astype(np.uint8)
    viewer.add_image(img, name="photo")
    bb = load_backbone("test_dino_tiny16", "random")
    _, att_mask = S.attention_for_image(bb, img, keep=0.6)
    lab = np.where(att_mask, 3, 1).astype(np.uint16)  # label 3 = exactly DINO's mask
    viewer.add_labels(lab, name="masks")
    widget.backbone_combo.setCurrentText("test_dino_tiny16")
    widget.bb_weights_edit.setText("random")
    widget.keep_spin.setValue(0.6)
    widget.choose_by_attention()
    layer = viewer.layers["masks"]
    assert layer.selected_label == 3
    assert layer.metadata["dinoseg_chosen"]["label"] == 3
    (box,) = layer_to_boxes(viewer.layers["pseudo GT · masks"])
    assert box.xyxy() == S.mask_to_box(att_mask).xyxy()


def test_errors_are_notifications(dock, monkeypatch):
    viewer, widget, _ = dock
    widget.automatic()  # no image
    assert any("Open an image" in m for m in _messages())
    viewer.add_image(np.zeros((32, 32), np.uint16), name="grey")
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    widget.model_combo.setCurrentText("vit_b")
    widget.weights_edit.setText("official")
    widget.automatic()
    assert any("sam_vit_b_01ec64.pth" in m and "dl.fbaipublicfiles.com" in m
               for m in _messages())
    assert "error" in widget.status.text() and widget.auto_button.isEnabled()
    viewer.add_shapes(name="empty boxes")
    widget.masks_from_boxes()
    assert any("holds no boxes" in m for m in _messages())
    assert len(viewer.layers) == 2  # nothing half-made was added


def test_threaded_run_with_progress(dock, image_file, monkeypatch, qtbot):
    viewer, widget, _ = dock
    monkeypatch.setenv("DINOSEG_SYNC", "0")
    path, img = image_file
    viewer.add_image(img, name="photo")
    widget.automatic()
    assert not widget.auto_button.isEnabled()  # busy while the worker runs
    qtbot.waitUntil(lambda: "SAM masks · photo" in viewer.layers, timeout=120_000)
    qtbot.waitUntil(widget.auto_button.isEnabled, timeout=10_000)
    assert viewer.layers["SAM masks · photo"].data.shape == (48, 64)
