"""Boxes moved in napari sit at fractions; saved and exported they are whole pixels everywhere."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from headless.boxes.curation import BoxCuration
from headless.boxes.formats import read_boxes
from headless.boxes.formats.common import whole_pixel
from headless.boxes.types import Box


def test_whole_pixel_rounds_halves_up():
    assert [whole_pixel(v) for v in (263.72, 263.5, 262.5, 10.49, -0.5, -0.51)] == [
        264, 264, 263, 10, 0, -1]


def test_moved_box_is_saved_and_exported_in_whole_pixels(tmp_path):
    cur = BoxCuration.for_folder(tmp_path)
    moved = Box(12.4, 30.5, 263.72, 190.49, label="dog")
    state = cur.save_edit("a.jpg", [moved], (300, 200))
    assert state.boxes[0].xyxy() == (12, 31, 264, 190)
    saved = json.loads(cur.path("a.jpg").read_text())
    assert "263.72" not in json.dumps(saved)
    cur.export(tmp_path / "c.json")
    cur.export(tmp_path / "c.csv")
    cur.export(tmp_path / "voc", fmt="voc")
    coco = json.loads((tmp_path / "c.json").read_text())
    assert coco["annotations"][0]["bbox"] == [12, 31, 252, 159]  # x, y, w, h
    csv_box = read_boxes(tmp_path / "c.csv").boxes["a.jpg"][0]
    xml = ET.parse(next((tmp_path / "voc").glob("*.xml"))).getroot()
    voc = [int(xml.find(f"object/bndbox/{t}").text) for t in ("xmin", "ymin", "xmax", "ymax")]
    assert csv_box.xyxy() == (12, 31, 264, 190)
    assert voc == [13, 32, 264, 190]  # VOC: 1-based inclusive of the same whole pixels
