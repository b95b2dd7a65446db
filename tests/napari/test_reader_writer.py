"""napari reader and writers for box files, and the Box <-> Shapes conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headless.boxes import Box, BoxSet, read_boxes, write_coco, write_csv, write_voc
from napari_dinoseg._reader import get_reader
from napari_dinoseg._widgets.boxes.layers import (
    box_to_rectangle,
    boxset_to_layer_data,
    layer_data_to_boxset,
    rectangle_to_xyxy,
    shapes_to_boxes,
)
from napari_dinoseg._writer import write_coco as napari_write_coco
from napari_dinoseg._writer import write_csv as napari_write_csv
from napari_dinoseg._writer import write_voc as napari_write_voc


def _set() -> BoxSet:
    bs = BoxSet()
    bs.add("a.jpg", [Box(0, 0, 10, 5, label="cat", score=0.5, source="lost"),
                     Box(3, 4, 20, 10, label="dog", source="gt", difficult=True)], (20, 10))
    bs.add("b.jpg", [Box(2, 2, 6, 8, label="cat", source="user")], (30, 12))
    bs.add("c.jpg", [], (5, 5))
    return bs


def test_rectangles_sit_on_pixel_edges():
    corners = box_to_rectangle(Box(0, 0, 10, 5))
    # napari centres pixel (r, c) at (r, c): the box's pixels span [-0.5, 9.5] x [-0.5, 4.5]
    assert corners.tolist() == [[-0.5, -0.5], [-0.5, 9.5], [4.5, 9.5], [4.5, -0.5]]
    assert rectangle_to_xyxy(corners) == (0, 0, 10, 5)
    assert box_to_rectangle(Box(1, 2, 3, 4), plane=7)[:, 0].tolist() == [7.0] * 4
    # any shape becomes its bounding box; shapes without area are left out
    tri = np.array([[0.5, 0.5], [9.5, 2.5], [4.5, 6.5]])
    line = np.array([[1.5, 1.5], [1.5, 8.5]])
    boxes, planes = shapes_to_boxes([tri, line])
    assert [b.xyxy() for b in boxes] == [(1, 1, 7, 10)] and planes == [-1]
    assert boxes[0].source == "user" and boxes[0].score is None


def test_layer_data_round_trip_one_image_and_dataset():
    bs = _set()
    one = bs.subset(["a.jpg"])
    data, kwargs, kind = boxset_to_layer_data(one)
    assert kind == "shapes" and len(data) == 2 and np.asarray(data[0]).shape == (4, 2)
    assert list(kwargs["features"]["caption"]) == ["cat: lost 0.50", "dog: gt"]
    meta = {**kwargs, "properties": None}
    assert layer_data_to_boxset(data, meta) == one

    data, kwargs, _ = boxset_to_layer_data(bs)
    assert np.asarray(data[0]).shape == (4, 3)  # plane = image index
    assert [int(np.asarray(d)[0, 0]) for d in data] == [0, 0, 1]
    back = layer_data_to_boxset(data, kwargs)
    assert back == bs and back.images == ["a.jpg", "b.jpg", "c.jpg"]


def test_get_reader_claims_only_box_files(tmp_path):
    bs = _set()
    write_coco(tmp_path / "c.json", bs)
    write_voc(tmp_path / "voc", bs)
    write_csv(tmp_path / "b.csv", bs)
    assert get_reader(str(tmp_path / "c.json")) is not None
    assert get_reader(str(tmp_path / "voc")) is not None
    assert get_reader(str(tmp_path / "voc" / "a.xml")) is not None
    assert get_reader(str(tmp_path / "b.csv")) is not None
    assert get_reader([str(tmp_path / "b.csv")]) is not None
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "other.xml").write_text("<svg/>")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "empty").mkdir()
    for name in ("other.json", "other.csv", "other.xml", "broken.json", "empty", "none.json"):
        assert get_reader(str(tmp_path / name)) is None, name
    assert get_reader([str(tmp_path / "b.csv"), str(tmp_path / "c.json")]) is None


def test_reader_layers(tmp_path):
    bs = _set()
    write_coco(tmp_path / "c.json", bs)
    (layer,) = get_reader(str(tmp_path / "c.json"))(str(tmp_path / "c.json"))
    data, kwargs, kind = layer
    assert kind == "shapes" and len(data) == 3
    assert kwargs["shape_type"] == "rectangle"
    assert layer_data_to_boxset(data, kwargs) == bs
    write_voc(tmp_path / "one", bs.subset(["b.jpg"]))
    path = str(tmp_path / "one" / "b.xml")
    ((data, kwargs, _),) = get_reader(path)(path)
    assert np.asarray(data[0]).shape == (4, 2)
    assert layer_data_to_boxset(data, kwargs).boxes["b.jpg"] == [
        Box(2, 2, 6, 8, label="cat", source="user")]


@pytest.mark.parametrize("writer,suffix", [(napari_write_coco, ".json"),
                                           (napari_write_csv, ".csv")])
def test_writers_round_trip(tmp_path, writer, suffix):
    bs = _set()
    data, kwargs, _ = boxset_to_layer_data(bs)
    (out,) = writer(str(tmp_path / f"x{suffix}"), data, kwargs)
    assert read_boxes(out) == bs


def test_voc_writer_one_image_file_or_dataset_folder(tmp_path):
    bs = _set()
    data, kwargs, _ = boxset_to_layer_data(bs.subset(["a.jpg"]))
    (out,) = napari_write_voc(str(tmp_path / "a.xml"), data, kwargs)
    assert Path(out) == tmp_path / "a.xml"
    assert read_boxes(out).boxes == {"a.jpg": bs.boxes["a.jpg"]}
    data, kwargs, _ = boxset_to_layer_data(bs)
    outs = napari_write_voc(str(tmp_path / "all.xml"), data, kwargs)
    assert sorted(Path(o).name for o in outs) == ["a.xml", "b.xml", "c.xml"]
    assert read_boxes(tmp_path / "all") == bs


def test_writer_for_a_layer_drawn_by_hand(tmp_path):
    # a Shapes layer made in napari without our metadata: one image named after the layer
    data = [np.array([[-0.5, -0.5], [-0.5, 9.5], [4.5, 9.5], [4.5, -0.5]])]
    meta = {"name": "my boxes", "features": None, "properties": {}, "metadata": {}}
    (out,) = napari_write_csv(str(tmp_path / "h.csv"), data, meta)
    got = read_boxes(out)
    assert got.boxes == {"my boxes": [Box(0, 0, 10, 5, source="user")]}
    assert got.sizes == {"my boxes": (10, 5)}  # unknown size: the boxes' extent


@pytest.mark.gui
def test_open_and_save_through_napari(make_napari_viewer, shared_data, tmp_path):
    viewer = make_napari_viewer()
    folder = shared_data / "raccoon_voc" / "annotations"
    layers = viewer.open(str(folder), plugin="napari-dinoseg")
    layer = layers[0]
    assert layer.nshapes == 217 and layer.ndim == 3
    out = tmp_path / "raccoon.json"
    layer.save(str(out), plugin="napari-dinoseg")
    from pycocotools.coco import COCO

    coco = COCO(str(out))
    assert len(coco.imgs) == 200 and len(coco.anns) == 217
    assert read_boxes(out) == read_boxes(folder)

