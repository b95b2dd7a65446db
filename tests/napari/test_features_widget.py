"""The features dock in a real napari viewer (Xvfb): layers, overlay geometry, screenshot."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    from napari_dinoseg._widgets.features.panel import FeaturesWidget

    viewer = make_napari_viewer(show=True)
    widget = FeaturesWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.backbone_combo.setCurrentText("test_dino_tiny16")
    widget.weights_edit.setText("random")
    return viewer, widget


def test_sample_data_and_layers_overlay_the_image(dock, tmp_path):
    from napari_dinoseg._sample_data import chelsea
    from napari_dinoseg._widgets.common.layers import provenance_text

    viewer, widget = dock
    data, meta, _ = chelsea()[0]
    viewer.add_image(data, **meta)
    assert widget.image_combo.currentText() == "chelsea"
    widget.run()
    names = [ly.name for ly in viewer.layers]
    mean = viewer.layers["attn mean · chelsea (random)"]
    heads = viewer.layers["attn heads · chelsea (random)"]
    mask = viewer.layers["attn mask · chelsea (random)"]
    pca = viewer.layers["PCA · chelsea (random)"]
    assert len(names) == 5
    # short names that differ at the start; provenance in the metadata
    assert len({n[:7] for n in names[1:]}) == 4
    info = mean.metadata["dinoseg"]
    assert info["backbone"] == "test_dino_tiny16" and info["weights"] == "random (untrained)"
    assert provenance_text(mean.metadata).startswith("attn mean of chelsea: test_dino_tiny16")
    # heads: one 2D mosaic beside the image, so no extra dimension slider
    assert heads.data.ndim == 2 and viewer.dims.ndim == 2 and not heads.visible
    assert heads.metadata["dinoseg"]["heads"] == 3
    assert mean.data.shape == (19, 29)  # 300x451 at p16
    assert type(mask).__name__ == "Labels" and pca.rgb
    # the grid map's top-left edges land exactly on the image's
    (sy, sx), (ty, tx) = mean.scale, mean.translate
    assert ty - sy / 2 == pytest.approx(-0.5) and tx - sx / 2 == pytest.approx(-0.5)
    assert widget.status.text().startswith("attn mean of chelsea: test_dino_tiny16")
    # run again: layers are updated in place, not duplicated
    widget.run()
    assert len(viewer.layers) == 5
    shot = viewer.screenshot(str(tmp_path / "shot.png"), canvas_only=True)
    assert shot.ndim == 3 and shot[..., :3].std() > 10  # not blank
    assert len(np.unique(shot[..., 0])) > 20


def _world_box(layer):
    """World (min, max) corners of a 2D layer's pixels (pixel edges, not centres)."""
    shape = np.asarray(layer.data.shape[:2], float)
    lo = np.asarray(layer.translate[-2:]) - np.asarray(layer.scale[-2:]) / 2
    return lo, lo + shape * np.asarray(layer.scale[-2:])


@pytest.mark.parametrize("side", [512, 448])
def test_patch_maps_extent_matches_the_image(dock, side):
    """37 x 14 = 518 px of patches over a 512 px image: only the padding may stick out."""
    viewer, widget = dock
    widget.backbone_combo.setCurrentText("test_dinov2_tiny14_reg")
    img = viewer.add_image(np.random.default_rng(0).random((side, side)), name="img")
    widget.run()
    mean = viewer.layers["attn mean · img (random)"]
    lo, hi = _world_box(mean)
    ilo, ihi = _world_box(img)
    np.testing.assert_allclose(lo, ilo)  # top-left edges coincide
    pad = (-side) % 14  # the zero padding the last patch saw
    np.testing.assert_allclose(hi - ihi, [pad, pad])
    if side == 448:  # a multiple of the patch: the edges land exactly on the image's edges
        np.testing.assert_allclose(hi, ihi)


def test_foreground_and_clusters_layers(dock):
    viewer, widget = dock
    rng = np.random.default_rng(0)
    image = 0.2 + 0.05 * rng.random((64, 96))
    image[16:48, 24:72] = 0.8
    viewer.add_image(image, name="img")
    widget.fg_combo.setCurrentText("pca")
    widget.clusters_spin.setValue(3)
    widget.colour_spin.setValue(1.0)
    widget.run()
    fg = viewer.layers["foreground · img (random)"]
    cl = viewer.layers["clusters · img (random)"]
    assert type(fg).__name__ == "Labels" and fg.data.shape == (64, 96)
    assert set(np.unique(fg.data)) <= {0, 1}
    assert set(np.unique(cl.data)) == {1, 2, 3} and cl.metadata["dinoseg"]["k"] == 3
    assert cl.metadata["dinoseg"]["colour"] == 1.0
    np.testing.assert_allclose(fg.translate, (0, 0)) and np.testing.assert_allclose(fg.scale, 1)
    assert viewer.dims.ndim == 2
    widget.fg_only_check.setChecked(True)
    widget.run()
    cl = viewer.layers["clusters · img (random)"]
    fgm = viewer.layers["foreground · img (random)"].data.astype(bool)
    assert np.all(cl.data[~fgm] == 0)


def test_current_slice_of_a_stack_and_no_image(dock):
    from napari.utils.notifications import notification_manager

    viewer, widget = dock
    widget.run()  # no image: a notification, no crash
    assert any("Open an image" in str(n.message) for n in notification_manager.records)
    stack = np.zeros((4, 48, 64), np.uint8)
    stack[2, 10:30, 10:40] = 255
    viewer.add_image(stack, name="stack")
    viewer.dims.set_current_step(0, 2)
    widget.run()
    assert "attn mean · stack [2] (random)" in viewer.layers


def test_bad_weights_file_is_a_notification_not_a_crash(dock, tmp_path):
    from napari.utils.notifications import notification_manager

    viewer, widget = dock
    viewer.add_image(np.zeros((32, 32)), name="img")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    widget.weights_edit.setText(str(bad))
    widget.run()
    assert any("bad.pth" in str(n.message) for n in notification_manager.records)
    assert "error" in widget.status.text()
    assert widget.run_button.isEnabled()
