"""Box metrics on hand-computed cases, COCO / VOC / CSV files, and the curation store."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from headless.boxes import (
    Box,
    BoxFormatError,
    BoxSet,
    aiou,
    corloc,
    evaluate,
    iou,
    maiou,
    match_image_names,
    mean_iou,
    read_boxes,
    score_image,
    write_boxes,
    write_coco,
    write_csv,
    write_voc,
)
from headless.boxes.curation import (
    AUTOMATIC,
    EDITED,
    NONE,
    VERIFIED,
    BoxCuration,
)

EXACT = 1e-12


# -- metrics ---------------------------------------------------------------------------------


def test_iou_and_aiou_hand_computed():
    a, b = Box(0, 0, 10, 10), Box(5, 5, 15, 15)
    assert iou(a, b) == pytest.approx(25 / 175, abs=EXACT)  # 25 shared, 100 + 100 - 25
    assert iou(a, b) == iou(b, a)
    assert aiou(a, b) == pytest.approx(25 / 100, abs=EXACT)
    # half-overlap: IoU exactly 0.5
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 20)) == 0.5
    # a huge prediction covers the object: aIoU 1, IoU 0.01
    big, obj = Box(0, 0, 100, 100), Box(10, 10, 20, 20)
    assert aiou(big, obj) == 1.0
    assert iou(big, obj) == pytest.approx(0.01, abs=EXACT)
    # aIoU is asymmetric
    assert aiou(obj, big) == pytest.approx(0.01, abs=EXACT)
    # touching edges share no area (x1 exclusive); disjoint boxes and empty boxes give 0
    assert iou(Box(0, 0, 10, 10), Box(10, 0, 20, 10)) == 0.0
    assert iou(Box(0, 0, 1, 1), Box(5, 5, 6, 6)) == 0.0
    assert iou(Box(3, 3, 3, 3), Box(3, 3, 3, 3)) == 0.0
    assert aiou(Box(0, 0, 5, 5), Box(2, 2, 2, 9)) == 0.0
    assert iou(a, a) == 1.0


def test_score_image_takes_best_pair_and_its_aiou():
    gts = [Box(0, 0, 10, 10), Box(20, 20, 30, 30)]
    preds = [Box(5, 5, 15, 15), Box(20, 20, 30, 31)]
    s = score_image(preds, gts)
    assert s.best_iou == pytest.approx(100 / 110, abs=EXACT)
    assert s.aiou == 1.0
    assert s.hit and s.n_pred == 2 and s.n_gt == 2
    # ties in IoU are broken by the larger aIoU
    gt = [Box(0, 0, 10, 10)]
    inside = Box(0, 0, 5, 10)  # IoU 0.5, aIoU 0.5
    around = Box(0, 0, 20, 10)  # IoU 0.5, aIoU 1.0
    assert score_image([inside, around], gt).aiou == 1.0
    assert score_image([around, inside], gt).aiou == 1.0
    empty = score_image([], gt)
    assert (empty.best_iou, empty.aiou, empty.hit) == (0.0, 0.0, False)


def _dataset():
    gts = {
        "img1.jpg": [Box(0, 0, 10, 10)],
        "img2.jpg": [Box(0, 0, 10, 10), Box(20, 20, 30, 30)],
        "img3.jpg": [Box(0, 0, 10, 10)],
        "img4.jpg": [Box(0, 0, 4, 4)],
        "img5.jpg": [],
    }
    preds = {
        "img1.jpg": [Box(0, 0, 10, 20)],  # IoU exactly 0.5 -> hit; aIoU 1
        "img2.jpg": [Box(5, 5, 15, 15), Box(20, 20, 30, 31)],  # best 10/11 -> hit; aIoU 1
        # img3: no prediction -> 0, 0
        "img4.jpg": [Box(2, 2, 6, 6)],  # 4 / 28 -> miss; aIoU 4/16
        "img6.jpg": [Box(0, 0, 1, 1)],  # not in the ground truth
    }
    return preds, gts


def test_dataset_metrics_hand_computed():
    preds, gts = _dataset()
    ev = evaluate(preds, gts)
    assert ev.n_images == 4  # img5 has no box: not counted
    assert ev.n_hits == 2
    assert ev.corloc == 0.5
    assert ev.mean_iou == pytest.approx((0.5 + 10 / 11 + 0 + 1 / 7) / 4, abs=EXACT)
    assert ev.maiou == pytest.approx((1 + 1 + 0 + 0.25) / 4, abs=EXACT)
    assert ev.n_gt_boxes == 5
    assert ev.n_pred_boxes == 4
    assert ev.images_without_prediction == ["img3.jpg"]
    assert ev.images_without_gt == ["img5.jpg"]
    assert ev.predictions_not_in_gt == ["img6.jpg"]
    assert [s.hit for s in ev.per_image] == [True, True, False, False]
    assert corloc(preds, gts) == 0.5
    assert mean_iou(preds, gts) == ev.mean_iou
    assert maiou(preds, gts) == 0.5625
    # a stricter threshold: only img2 (10/11) stays a hit
    assert corloc(preds, gts, threshold=0.6) == 0.25
    # restricting to a list of images (by stem)
    sub = evaluate(preds, gts, images=["img1", "img4"])
    assert (sub.n_images, sub.n_hits, sub.corloc) == (2, 1, 0.5)
    json.dumps(ev.to_dict())  # serialisable for --json


def test_difficult_boxes_and_boxset_inputs():
    gts = BoxSet()
    gts.add("a.jpg", [Box(0, 0, 10, 10, difficult=True), Box(50, 50, 60, 60)], (100, 100))
    preds = {"a.jpg": [Box(0, 0, 10, 10)]}
    assert evaluate(preds, gts).corloc == 1.0  # LOST/TokenCut keep difficult boxes
    assert evaluate(preds, gts, ignore_difficult=True).corloc == 0.0


def test_image_names_matched_by_file_name_then_stem():
    m = match_image_names(["JPEGImages/000005.jpg", "000007", "x/000009.png", "y/000009.png"],
                          ["000005.jpg", "000007.jpg", "000009.jpg", "000011.jpg"])
    assert m == {"000005.jpg": "JPEGImages/000005.jpg", "000007.jpg": "000007"}


# -- files -----------------------------------------------------------------------------------


def _sample_set() -> BoxSet:
    bs = BoxSet()
    bs.add("a.jpg", [
        Box(0, 0, 10, 5, label="cat", score=0.9123456789, source="lost"),
        Box(3, 4, 20, 10, label="dog", source="user", difficult=True),
    ], (20, 10))
    bs.add("b.png", [Box(0.1, 0.7, 10.3, 7.77, label="cat", score=1e-7, source="tokencut",
                         truncated=True)], (32, 16))
    bs.add("empty.tif", [], (8, 8))
    return bs


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_lossless_round_trip_coco_csv(tmp_path, suffix):
    bs = _sample_set()
    path = tmp_path / f"boxes{suffix}"
    write_boxes(path, bs)
    back = read_boxes(path)
    assert back == bs  # every float bit for bit, scores, sources, flags, empty images
    assert back.warnings == []
    assert list(back.boxes) == list(bs.boxes)


def test_coco_loads_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    bs = _sample_set()
    path = write_coco(tmp_path / "c.json", bs)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 3
    assert len(coco.getAnnIds()) == 3
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"cat", "dog"}
    img = coco.loadImgs([i for i in coco.getImgIds()
                         if coco.imgs[i]["file_name"] == "a.jpg"])[0]
    assert (img["width"], img["height"]) == (20, 10)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
    assert [a["bbox"] for a in anns] == [[0, 0, 10, 5], [3, 4, 17, 6]]
    assert anns[0]["score"] == 0.9123456789 and "score" not in anns[1]


def test_voc_convention_one_based_inclusive(tmp_path):
    # a VOC box over the first ten columns and five rows of a 20 x 10 image
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><filename>a.jpg</filename><size><width>20</width><height>10</height>"
        "<depth>3</depth></size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>10</xmax><ymax>5</ymax></bndbox></object><object><name>all</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>10</ymax></bndbox></object>"
        "</annotation>"
    )
    bs = read_boxes(xml)
    assert bs.boxes["a.jpg"] == [Box(0, 0, 10, 5, label="cat", source="gt"),
                                 Box(0, 0, 20, 10, label="all", source="gt")]
    assert bs.boxes["a.jpg"][1].area == 200  # the whole image, no pixel lost or added
    assert bs.warnings == []
    out = write_voc(tmp_path / "out", bs)
    root = ET.parse(out[0]).getroot()
    coords = [[int(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
              for o in root.findall("object")]
    assert coords == [[1, 1, 10, 5], [1, 1, 20, 10]]
    assert read_boxes(tmp_path / "out") == bs


def test_voc_round_trip_and_rounding(tmp_path):
    bs = _sample_set()
    files = write_voc(tmp_path / "voc", bs)
    assert sorted(f.name for f in files) == ["a.xml", "b.xml", "empty.xml"]
    back = read_boxes(tmp_path / "voc")
    assert back.boxes["a.jpg"] == bs.boxes["a.jpg"]  # whole pixels: exact
    assert back.boxes["empty.tif"] == [] and back.sizes == bs.sizes
    assert set(back.classes) == set(bs.classes)
    # VOC holds whole pixels: 0.1 -> 0, 0.7 -> 1, 10.3 -> 10, 7.77 -> 8
    b = back.boxes["b.png"][0]
    assert b.xyxy() == (0, 1, 10, 8)
    assert (b.score, b.source, b.truncated) == (1e-7, "tokencut", True)
    # one image to a single .xml file; many images need a folder
    write_boxes(tmp_path / "one.xml", bs.subset(["a.jpg"]))
    assert read_boxes(tmp_path / "one.xml").boxes["a.jpg"] == bs.boxes["a.jpg"]
    with pytest.raises(BoxFormatError, match="folder"):
        write_boxes(tmp_path / "many.xml", bs)


def test_clipped_and_dropped_on_import_are_reported(tmp_path, caplog):
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [-5, 2, 10, 20]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 30, 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ],
        "categories": [{"id": 1, "name": "x"}],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(coco))
    with caplog.at_level("WARNING"):
        bs = read_boxes(path)
    assert [b.xyxy() for b in bs.boxes["a.jpg"]] == [(0, 2, 5, 10), (1, 1, 3, 3)]
    assert len(bs.warnings) == 2
    assert "c.json" in bs.warnings[0]
    assert "box 0 [-5, 2, 5, 22] sticks out of the 20x10 image; clipped to [0, 2, 5, 10]" \
        in bs.warnings[0]
    assert "dropped" in bs.warnings[1]
    assert "clipped" in caplog.text

    voc = tmp_path / "v.xml"
    voc.write_text("<annotation><filename>v.jpg</filename><size><width>20</width>"
                   "<height>10</height></size><object><name>x</name><bndbox><xmin>5</xmin>"
                   "<ymin>1</ymin><xmax>30</xmax><ymax>10</ymax></bndbox></object></annotation>")
    bs = read_boxes(voc)
    assert bs.boxes["v.jpg"][0].xyxy() == (4, 0, 20, 10)
    assert len(bs.warnings) == 1 and "v.xml" in bs.warnings[0]

    csv = tmp_path / "b.csv"
    csv.write_text("image,width,height,label,x0,y0,x1,y1,score,source\n"
                   "a.jpg,20,10,x,-1,-1,5,5,,\n")
    bs = read_boxes(csv)
    assert bs.boxes["a.jpg"][0].xyxy() == (0, 0, 5, 5)
    assert bs.boxes["a.jpg"][0].source == "gt" and len(bs.warnings) == 1


MALFORMED_COCO = [
    ({"annotations": []}, "'images'"),
    ({"images": [{"id": 1, "file_name": "a", "height": 3}], "annotations": []},
     r"images\[0\]: missing field 'width'"),
    ({"images": [{"id": 1, "file_name": "a", "width": 0, "height": 3}], "annotations": []},
     r"images\[0\]: field 'width'"),
    ({"images": [{"id": 1, "file_name": "a", "width": 4, "height": 3}],
      "annotations": [{"image_id": 1, "category_id": 1}], "categories": [{"id": 1, "name": "x"}]},
     r"annotations\[0\]: missing field 'bbox'"),
    ({"images": [{"id": 1, "file_name": "a", "width": 4, "height": 3}],
      "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}],
      "categories": [{"id": 1, "name": "x"}]}, r"annotations\[0\]: field 'bbox'"),
    ({"images": [{"id": 1, "file_name": "a", "width": 4, "height": 3}],
      "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, "two", 3, 4]}],
      "categories": [{"id": 1, "name": "x"}]}, r"annotations\[0\]: field 'bbox'"),
    ({"images": [{"id": 1, "file_name": "a", "width": 4, "height": 3}],
      "annotations": [{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}],
      "categories": [{"id": 1, "name": "x"}]}, r"annotations\[0\]: field 'image_id'"),
    ({"images": [{"id": 1, "file_name": "a", "width": 4, "height": 3}],
      "annotations": [{"image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4]}],
      "categories": [{"id": 1, "name": "x"}]}, r"annotations\[0\]: field 'category_id'"),
    ([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}], "results"),
]


@pytest.mark.parametrize("content,field", MALFORMED_COCO)
def test_malformed_coco_names_file_and_field(tmp_path, content, field):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(content))
    with pytest.raises(BoxFormatError, match=field) as info:
        read_boxes(path)
    assert "broken.json" in str(info.value)


def test_malformed_voc_and_csv_name_file_and_field(tmp_path):
    head = "<annotation><filename>a.jpg</filename><size><width>20</width><height>10</height></size>"
    cases = {
        "nobox.xml": (head + "<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                      "<ymax>4</ymax></bndbox></object></annotation>",
                      r"object\[0\]: missing field 'bndbox/xmax'"),
        "text.xml": (head + "<object><name>x</name><bndbox><xmin>one</xmin><ymin>1</ymin>"
                     "<xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>",
                     "field 'bndbox/xmin' must be a number"),
        "inverted.xml": (head + "<object><name>x</name><bndbox><xmin>9</xmin><ymin>1</ymin>"
                         "<xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>",
                         "'bndbox/xmax'"),
        "nosize.xml": ("<annotation><filename>a.jpg</filename></annotation>",
                       "missing field 'size/width'"),
        "notvoc.xml": ("<svg></svg>", "<annotation>"),
        "cut.xml": (head + "<object>", "not valid XML"),
    }
    for name, (text, field) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(BoxFormatError, match=field) as info:
            read_boxes(tmp_path / name)
        assert name in str(info.value)

    bad_cols = tmp_path / "cols.csv"
    bad_cols.write_text("image,width,height,label,x0,y0,y1,score,source\n")
    with pytest.raises(BoxFormatError, match="'x1'") as info:
        read_boxes(bad_cols)
    assert "cols.csv" in str(info.value)
    bad_num = tmp_path / "num.csv"
    bad_num.write_text("image,width,height,label,x0,y0,x1,y1,score,source\n"
                       "a.jpg,20,10,x,1,1,5,5,,\na.jpg,20,10,x,1,abc,5,5,,\n")
    with pytest.raises(BoxFormatError, match=r"num.csv: line 3: field 'y0'"):
        read_boxes(bad_num)
    with pytest.raises(BoxFormatError, match="no such file"):
        read_boxes(tmp_path / "missing.json")
    with pytest.raises(BoxFormatError, match="unknown box file type"):
        read_boxes(bad_num.rename(tmp_path / "boxes.txt"))


def test_raccoon_voc_round_trips_through_coco(shared_data, tmp_path):
    from pycocotools.coco import COCO

    ann_dir = shared_data / "raccoon_voc" / "annotations"
    voc = read_boxes(ann_dir)
    assert len(voc.images) == 200
    assert voc.n_boxes == 217
    assert sum(len(b) == 1 for b in voc.boxes.values()) == 184
    assert voc.classes == ["raccoon"] and voc.warnings == []
    assert voc.sizes["raccoon-1.jpg"] == (650, 417)
    # raccoon-1.xml: xmin 81 ymin 88 xmax 522 ymax 408 (1-based inclusive)
    assert voc.boxes["raccoon-1.jpg"][0].xyxy() == (80, 87, 522, 408)
    assert sum(b.truncated for bs in voc.boxes.values() for b in bs) == 59

    coco_path = write_coco(tmp_path / "raccoon.json", voc)
    coco = COCO(str(coco_path))
    assert len(coco.imgs) == 200 and len(coco.anns) == 217
    coco_set = read_boxes(coco_path)
    assert coco_set == voc

    write_voc(tmp_path / "voc", coco_set)
    again = read_boxes(tmp_path / "voc")
    assert again == voc
    # the written XML holds the very same integers as the originals
    for original in sorted(ann_dir.glob("*.xml")):
        a, b = ET.parse(original).getroot(), ET.parse(tmp_path / "voc" / original.name).getroot()
        key = ("xmin", "ymin", "xmax", "ymax")
        assert [[o.find(f"bndbox/{k}").text for k in key] for o in a.findall("object")] == \
               [[o.find(f"bndbox/{k}").text for k in key] for o in b.findall("object")]
        assert a.find("size/width").text == b.find("size/width").text
    write_csv(tmp_path / "r.csv", again)
    assert read_boxes(tmp_path / "r.csv") == voc


# -- curation --------------------------------------------------------------------------------


def test_curation_statuses_saves_and_restores(tmp_path):
    cur = BoxCuration.for_folder(tmp_path)
    assert cur.status("a.png") == NONE and cur.load("a.png") is None
    auto = [Box(1, 1, 5, 5, score=0.8, source="lost")]
    state, written = cur.save_automatic("a.png", auto, (10, 8), "lost", {"backbone": "x"})
    assert written and state.status == AUTOMATIC
    assert cur.path("a.png") == tmp_path.resolve() / ".dinoseg/images/a.png/boxes.json"

    edited = [Box(2, 1, 6, 5, score=0.8, source="lost"), Box(0, 0, 3, 3)]
    cur.save_edit("a.png", edited)  # size taken from the saved state
    # a new curation object (a reopened project) sees exactly the edited boxes
    again = BoxCuration.for_folder(tmp_path)
    st = again.load("a.png")
    assert st.status == EDITED and st.boxes == edited and st.size == (10, 8)
    assert st.method == "lost" and st.details == {"backbone": "x"}

    # automatic results never replace the user's boxes ...
    st2, written = again.save_automatic("a.png", auto, (10, 8), "lost")
    assert not written and st2.boxes == edited
    # ... unless asked, and then the user's version is kept aside
    st3, written = again.save_automatic("a.png", auto, (10, 8), "tokencut", overwrite=True)
    assert written and st3.boxes == auto
    prev = json.loads((cur.path("a.png").parent / "boxes.previous.json").read_text())
    assert prev["status"] == EDITED and len(prev["boxes"]) == 2

    ver = again.mark_verified("a.png")
    assert ver.status == VERIFIED and again.status("a.png") == VERIFIED
    assert again.saved_images() == ["a.png"]
    # no temporary files are left behind by the atomic writes
    assert sorted(p.name for p in cur.path("a.png").parent.iterdir()) == \
        ["boxes.json", "boxes.previous.json"]


def test_curation_clips_exports_and_survives_damage(tmp_path):
    cur = BoxCuration.for_folder(tmp_path)
    cur.save_edit("b.png", [Box(-3, 2, 50, 9), Box(40, 40, 60, 60)], (20, 10))
    assert cur.load("b.png").boxes == [Box(0, 2, 20, 9)]  # clipped; outside box dropped
    cur.save_automatic("a.png", [Box(1, 1, 4, 4, score=0.5, source="most")], (8, 8), "most")
    bs, written = cur.export(tmp_path / "out.json")
    assert bs.images == ["a.png", "b.png"] and read_boxes(written[0]) == bs
    only_edited = cur.to_boxset(statuses=["edited"])
    assert only_edited.images == ["b.png"]

    cur.path("a.png").write_text("{not json")
    with pytest.raises(BoxFormatError, match="boxes.json"):
        cur.load("a.png")
    assert cur.status("a.png") == NONE
    cur.save_edit("a.png", [Box(0, 0, 2, 2)], (8, 8))
    kept = [p.name for p in cur.path("a.png").parent.iterdir()]
    assert any(n.startswith("boxes.json.damaged-") for n in kept)  # the damaged file is kept


def test_box_dict_round_trip():
    b = Box(1.5, 2, 3, 4, label="x", score=0.25, source="most", difficult=True)
    assert Box.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    assert Box.from_dict({"x0": 0, "y0": 0, "x1": 1, "y1": 1}) == Box(0, 0, 1, 1)


def test_no_qt_or_napari_in_box_engine():
    import subprocess
    import sys

    code = ("import sys; import headless.boxes.metrics, headless.boxes.curation, "
            "headless.boxes.compute, "
            "headless.cli.boxes, headless.cli.eval_boxes; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('napari', 'qtpy', 'PyQt5', 'magicgui', 'torch')]; print(bad); "
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).parent)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;&x;&x;">]>',
    '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
])
def test_voc_files_with_entities_are_refused_not_expanded(tmp_path, doctype):
    from headless.boxes import BoxFormatError, read_voc

    body = ("<annotation><filename>a.jpg</filename><size><width>10</width><height>10</height>"
            "</size><object><name>&y;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
            "<ymax>5</ymax></bndbox></object></annotation>").replace("&y;", "&x;" if "SYSTEM"
                                                                     in doctype else "&y;")
    path = tmp_path / "bomb.xml"
    path.write_text(f'<?xml version="1.0"?>\n{doctype}\n{body}')
    with pytest.raises(BoxFormatError, match="refused: unsafe XML"):
        read_voc(path)


def test_damaged_saved_boxes_are_never_silently_replaced(tmp_path):
    from headless.boxes import BoxCuration, BoxFormatError

    cur = BoxCuration.for_folder(tmp_path)
    cur.save_edit("a.png", [Box(0, 0, 4, 4)], (8, 8))
    for attempt in range(2):  # two damages within the same second keep two backups
        cur.path("a.png").write_text("{damaged " + str(attempt))
        with pytest.raises(BoxFormatError, match="kept at boxes.json.damaged-.*no automatic"):
            cur.save_automatic("a.png", [Box(1, 1, 3, 3)], (8, 8), "lost")
    folder = cur.path("a.png").parent
    backups = sorted(p.read_text() for p in folder.glob("boxes.json.damaged-*"))
    assert backups == ["{damaged 0", "{damaged 1"] and len(cur.quarantined) == 2
    assert not cur.path("a.png").exists()  # nothing automatic was written in their place
