"""The embedding explorer dock in a real viewer: map, colours, ranked list, image, CSV."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.gui


@pytest.fixture
def planted(tmp_path):
    """Two classes of clearly different images and one light image filed under dark."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for c, base in (("dark", 20), ("light", 230)):
        (root / c).mkdir(parents=True)
        for i in range(6):
            img = np.clip(base + rng.normal(0, 5, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")
    Image.fromarray(np.full((40, 40, 3), 230, np.uint8)).save(root / "dark" / "odd.png")
    return root


def _dock(viewer, folder, from_menu=False):
    from napari_dinoseg._widgets.embeddings.panel import EmbeddingsWidget

    if from_menu:  # as Plugins > DINO seg > Embeddings opens it
        w = viewer.window.add_plugin_dock_widget("napari-dinoseg", "Embeddings")[1]
        assert isinstance(w, EmbeddingsWidget)
    else:
        w = EmbeddingsWidget(viewer)
    w.folder_edit.setText(str(folder))
    w.model_fields.set(name="test_dino_tiny16", weights="random", device="cpu")
    w.size_spin.setValue(32)
    w.k_spin.setValue(4)
    w.projection_combo.setCurrentText("pca")
    return w


def _errors(seen):
    return [n for n in seen if str(n.severity).lower().endswith("error")]


def test_map_colours_ranks_steps_and_opens(make_napari_viewer, qtbot, monkeypatch, planted,
                                           tmp_path):
    import headless.images as images
    import headless.train.ssl.extract as extract

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)  # threaded, as for a user
    threads, reads = [], []
    real_extract, real_read = extract.extract_features, images.read_image

    def spy_extract(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return (yield from real_extract(*args, **kwargs))

    def spy_read(*args, **kwargs):
        reads.append(threading.current_thread() is threading.main_thread())
        return real_read(*args, **kwargs)

    monkeypatch.setattr(extract, "extract_features", spy_extract)
    monkeypatch.setattr(images, "read_image", spy_read)
    viewer = make_napari_viewer()
    w = _dock(viewer, planted)
    qtbot.addWidget(w)
    w.compute_map()
    assert not w.compute_button.isEnabled()  # busy while the worker runs
    qtbot.waitUntil(lambda: not w.slot.busy, timeout=60_000)
    assert threads == [False]  # the features were computed off the GUI thread
    assert reads and not any(reads)  # and the images read there
    del reads[:]

    layer = viewer.layers["embedding · pets"]
    qtbot.waitUntil(lambda: layer.visible, timeout=5000)  # added hidden, shown a turn later
    qtbot.waitUntil(lambda: viewer.layers.selection.active is layer, timeout=5000)  # selected
    assert layer.mode == "select"  # a click selects a point (napari kept it in pan / zoom)
    assert layer.data.shape == (13, 2) and w.layer is layer
    assert set(layer.features["class"]) == {"dark", "light"}
    assert "dark/odd.png" in list(layer.features["image"])
    assert np.ptp(layer.data, 0).max() == pytest.approx(1000) and layer.size[0] == 35
    odd = list(layer.features["image"]).index("dark/odd.png")
    by_class = layer.face_color.copy()
    assert len({tuple(c) for c in by_class.round(3)}) == 2  # one colour per class
    assert "dark" in w.legend.text() and "13 images, pca map" in w.status.text()

    w.colour_combo.setCurrentIndex(w.colour_combo.findData("mislabel"))  # as a user picks it
    assert not np.allclose(layer.face_color, by_class)  # recoloured by the score
    assert w.rank_combo.currentData() == "mislabel"  # and the list ranks by it
    assert w.ranked_list.count() == 13
    assert w.ranked_list.item(0).text().startswith("1. dark/odd.png")
    assert np.argmax(layer.face_color[:, 0]) == odd  # viridis: the highest score is yellow

    w.step(1)  # Next: the first (most unusual) image
    assert w.ranked_list.currentRow() == 0 and set(layer.selected_data) == {odd}
    qtbot.waitUntil(lambda: w.image_layer is not None, timeout=10_000)
    img = w.image_layer
    assert img.name == "image · odd.png" and img.data.shape == (40, 40, 3)
    assert img.translate[1] > layer.data[:, 1].max()  # beside the map, to its right
    assert viewer.layers.selection.active is layer  # clicks keep selecting points
    assert "k-NN says light" in w.detail.text()

    second = w._rows[1]
    w.next_button.click()
    assert w.ranked_list.currentRow() == 1 and set(layer.selected_data) == {second}
    name = planted.joinpath(layer.features["image"][second]).name
    qtbot.waitUntil(lambda: w.image_layer.name == f"image · {name}", timeout=10_000)
    assert len([x for x in viewer.layers if x.name.startswith("image · ")]) == 1

    layer.selected_data = {3}  # a click on another point
    qtbot.waitUntil(lambda: w.image_layer.name.endswith(
        planted.joinpath(layer.features["image"][3]).name), timeout=10_000)
    assert w.ranked_list.currentRow() == w._rows.index(3)  # the list follows the map
    assert len(reads) >= 3 and not any(reads)  # the opened images were read in workers too

    out = tmp_path / "map.csv"
    w.export_csv(out)
    qtbot.waitUntil(lambda: not w.export_slot.busy, timeout=10_000)
    rows = list(csv.reader(out.open()))
    assert rows[0][:3] == ["path", "label", "predicted"] and len(rows) == 14
    assert f"wrote {out} and map.png" in w.status.text()
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "map.png").convert("RGB"))  # the map, as the CLI's
    assert png.shape[0] > 100 and len(np.unique(png.reshape(-1, 3), axis=0)) > 10


def test_missing_folder_is_one_line_and_adds_nothing(make_napari_viewer, monkeypatch, tmp_path):
    from napari.utils.notifications import notification_manager

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    viewer = make_napari_viewer()
    w = _dock(viewer, tmp_path / "missing", from_menu=True)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        w.compute_map()
        w.folder_edit.setText("  ")
        w.compute_map()
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    errors = _errors(seen)
    assert len(errors) == 2, [n.message for n in seen]
    assert "missing does not exist" in errors[0].message and "\n" not in errors[0].message
    assert errors[1].message == "Embeddings: choose a folder of images"
    assert len(viewer.layers) == 0 and not w.explore_box.isEnabled()
    assert w.compute_button.isEnabled()
    w.step(1)  # nothing computed: stepping and exporting do nothing
    w.export_csv(tmp_path / "x.csv")
    assert w.status.text() == "compute a map first" and not (tmp_path / "x.csv").exists()


def test_loose_images_have_no_mislabel_choice(make_napari_viewer, monkeypatch, planted):
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    viewer = make_napari_viewer()
    w = _dock(viewer, planted / "light")  # no sub-folders: no classes
    w.compute_map()
    layer = viewer.layers["embedding · light"]
    assert len(layer.data) == 6 and w.colour_combo.currentData() == "knn_distance"
    item = w.colour_combo.model().item(w.colour_combo.findData("mislabel"))
    assert not item.isEnabled()
    w.set_colour_by("mislabel")
    assert w.colour_combo.currentData() == "knn_distance" and "ImageFolder" in w.status.text()
    w.compute_map()  # again: the map is replaced, not doubled
    assert [x.name for x in viewer.layers] == ["embedding · light"]
