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

    viewer, widget = dock
    data, meta, _ = chelsea()[0]
    viewer.add_image(data, **meta)
    assert widget.image_combo.currentText() == "chelsea"
    widget.run()
    names = [ly.name for ly in viewer.layers]
    tag = "chelsea test_dino_tiny16"
    mean = viewer.layers[f"{tag} attention mean (random weights)"]
    heads = viewer.layers[f"{tag} attention heads (random weights)"]
    mask = viewer.layers[f"{tag} attention mask (random weights)"]
    pca = viewer.layers[f"{tag} PCA (random weights)"]
    assert len(names) == 5
    assert heads.data.shape[0] == 3 and mean.data.shape == (19, 29)  # 300x451 at p16
    assert type(mask).__name__ == "Labels" and pca.rgb
    # the grid map's outer edges land exactly on the image's edges
    (sy, sx), (ty, tx) = mean.scale, mean.translate
    assert ty - sy / 2 == pytest.approx(-0.5) and tx - sx / 2 == pytest.approx(-0.5)
    assert widget.status.text().startswith("test_dino_tiny16: random (untrained)")
    # run again: layers are updated in place, not duplicated
    widget.run()
    assert len(viewer.layers) == 5
    shot = viewer.screenshot(str(tmp_path / "shot.png"), canvas_only=True)
    assert shot.ndim == 3 and shot[..., :3].std() > 10  # not blank
    assert len(np.unique(shot[..., 0])) > 20


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
    assert "stack test_dino_tiny16 [2] attention mean (random weights)" in viewer.layers


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
