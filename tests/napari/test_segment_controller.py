"""The scribble dock's controller and autosave, without Qt or napari.

Plain values in, engine settings out; class-name bookkeeping; which run result is current; the
training and stack jobs on a small synthetic image; saves written and read back on tmp_path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from headless.progress import run
from headless.store import ProjectStore
from napari_dinoseg._widgets.segment.autosave import (
    CLASSES_FILE,
    PROBE_FILE,
    SCRIBBLES_FILE,
    Autosaver,
    SavedWork,
    project_for,
)
from napari_dinoseg._widgets.segment.controller import (
    DEFAULT_CLASSES,
    DockOptions,
    Notice,
    RunResult,
    SegmentController,
    needs_feature_switch,
    slice_index,
    spatial_shape,
    summary,
)

ROOT = Path(__file__).resolve().parents[2]


def two_halves(h: int = 24, w: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dark left half and a bright right half, with scribbles 5 (left) and 9 (right)."""
    rng = np.random.default_rng(seed)
    image = np.where(np.arange(w)[None, :] < w // 2, 40.0, 200.0) + rng.normal(0, 5, (h, w))
    scribbles = np.zeros((h, w), np.uint16)
    scribbles[2:h - 2, 2:w // 2 - 4] = 5
    scribbles[2:h - 2, w // 2 + 4:w - 2] = 9
    return image.astype(np.float32), scribbles


def trained(controller: SegmentController, image=None, scribbles=None, generation=1,
            options: DockOptions | None = None) -> RunResult | Notice:
    if image is None:
        image, scribbles = two_halves()
    segmenter = controller.segmenter(options or DockOptions(classifier="linear"))
    job = controller.train_job(segmenter, image, scribbles, (), controller.class_names(), None,
                               generation, "img")
    return run(job)


# ---------------------------------------------------------------------------- imports


def test_controller_and_autosave_import_without_qt_or_napari():
    code = (
        "import sys\n"
        "for name in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui'):\n"
        "    sys.modules[name] = None\n"
        "import napari_dinoseg._widgets.segment.controller\n"
        "import napari_dinoseg._widgets.segment.autosave\n"
        "import napari_dinoseg._widgets.segment.project\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


# ---------------------------------------------------------------------------- settings


def test_classical_options_ignore_the_vit_fields():
    opts = DockOptions(mode="classical", backbone="dinov2_vits14", weights="random", shifts=8,
                       flips=True, classifier="rf", balance=False)
    s = opts.settings()
    assert s.features.mode == "classical" and s.features.backbone is None
    assert s.features.options() == DockOptions().feature_spec().options()
    assert s.classifier_name == "rf" and s.train.balance is False and s.crf is None


def test_vit_options_become_the_feature_spec():
    opts = DockOptions(mode="hr", backbone="test_dino_tiny16", weights="  ", shifts=8,
                       flips=True, classifier=None)
    spec = opts.feature_spec()
    assert (spec.mode, spec.backbone_name, spec.weights) == ("hr", "test_dino_tiny16", "official")
    assert spec.shifts == 8 and spec.flips is True
    assert opts.settings().classifier_name == "linear"  # None -> the mode's default
    assert DockOptions(mode="hr", weights=" ck.pth ").feature_spec().weights == "ck.pth"


def test_crf_values_become_crf_params():
    crf = dict(gaussian_sxy=2.0, gaussian_compat=1.5, bilateral_sxy=9.0, bilateral_srgb=12.0,
               bilateral_compat=4.0, iterations=7)
    params = DockOptions(crf=crf).settings().crf
    assert params is not None
    assert {k: getattr(params, k) for k in crf} == crf
    with pytest.raises(ValueError):
        DockOptions(crf={**crf, "gaussian_sxy": 0.0}).settings()
    with pytest.raises(ValueError):
        DockOptions(mode="no such mode").settings()


def test_segmenters_share_a_feature_source_per_spec():
    c = SegmentController()
    a = c.segmenter(DockOptions(classifier="rf"))
    b = c.segmenter(DockOptions(classifier="linear"))  # same features, other classifier
    assert a.source is b.source and b.settings.classifier_name == "linear"
    other = c.segmenter(DockOptions(mode="bilinear", backbone="test_dino_tiny16",
                                    weights="random"))
    assert other.source is not a.source
    for shifts in (0, 4, 8):  # at most three sources are kept
        c.segmenter(DockOptions(mode="hr", backbone="test_dino_tiny16", shifts=shifts))
    assert len(c._sources) == 3
    assert c.segmenter(DockOptions()).source is not a.source  # the oldest was dropped


def test_shapes_and_slice_index_from_plain_objects():
    grey = SimpleNamespace(data=np.zeros((3, 10, 12)), rgb=False)
    rgb = SimpleNamespace(data=np.zeros((10, 12, 3)), rgb=True)
    assert spatial_shape(grey) == (3, 10, 12) and spatial_shape(rgb) == (10, 12)
    assert slice_index((10, 12), (0, 0), 2) == ()
    assert slice_index((3, 10, 12), (2, 5, 5), 3) == (2,)
    assert slice_index((3, 10, 12), (9, 5, 5), 3) == (2,)  # clipped to the stack
    assert slice_index((3, 10, 12), (4, 1, 5, 5), 4) == (1,)  # an extra leading viewer axis


# ---------------------------------------------------------------------------- class names


def test_class_name_bookkeeping():
    c = SegmentController()
    assert c.class_names() == DEFAULT_CLASSES and c.first_class() == 1
    assert c.add_class() == 3 and c.class_names()[3] == "class 3"
    assert c.add_class("cell", 10) == 10
    c.rename_class(10, "  nucleus ")
    c.rename_class(3, "   ")
    assert c.class_names()[10] == "nucleus" and c.class_names()[3] == "class 3"
    c.remove_class(1)
    c.remove_class(99)  # unknown: nothing happens
    assert sorted(c.class_names()) == [2, 3, 10] and c.first_class() == 2
    assert c.label_features() == {"index": [0, 2, 3, 10],
                                  "class": ["unlabelled", "foreground", "class 3", "nucleus"]}
    names = c.class_names()
    names[2] = "changed"  # a copy: the controller's names stay
    assert c.class_names()[2] == "foreground"


def test_set_names_missing_names_and_saved_names():
    c = SegmentController()
    c.set_class_names({"127": "fibre", 255: "matrix", 0: "unlabelled", -1: "bad"})
    assert c.class_names() == {127: "fibre", 255: "matrix"}
    assert c.name_missing([127, 255]) is False
    assert c.name_missing([np.int64(7), 127]) is True
    assert c.class_names()[7] == "class 7"
    saved = c.classes_json()
    assert saved == {"127": "fibre", "255": "matrix", "7": "class 7"}
    other = SegmentController()
    assert other.restore_classes(saved) and other.class_names() == c.class_names()
    assert not other.restore_classes({"x": "not a value"})
    assert not other.restore_classes(["not", "a", "dict"])
    assert other.class_names() == c.class_names()  # kept when the saved names don't parse


# ---------------------------------------------------------------------------- runs


def test_training_job_learns_the_scribbled_classes():
    c = SegmentController()
    c.set_class_names({5: "dark", 9: "bright"})
    image, scribbles = two_halves()
    result = trained(c, image, scribbles, generation=c.next_generation())
    assert isinstance(result, RunResult) and result.generation == 1 and c.phase == ""
    seg = result.segmentations[0]
    assert result.probe.meta.class_values == [5, 9]
    assert result.probe.meta.class_names == ["dark", "bright"]
    assert seg.labels.shape == (24, 32) and set(np.unique(seg.labels)) <= {5, 9}
    m = scribbles > 0
    assert (seg.labels[m] == scribbles[m]).mean() > 0.95
    assert c.accept(result) and c.probe is result.probe
    assert summary(result).startswith("linear probe on classical features")
    assert "dark (5), bright (9)" in summary(result)


def test_one_class_is_a_notice():
    c = SegmentController()
    image, scribbles = two_halves()
    scribbles[scribbles == 9] = 0
    notice = trained(c, image, scribbles, generation=4)
    assert isinstance(notice, Notice) and notice.generation == 4
    assert "only one class" in notice.message and c.phase == ""


def test_a_stale_result_is_dropped_when_a_newer_one_was_shown():
    c = SegmentController()
    old_gen, new_gen = c.next_generation(), c.next_generation()
    assert (old_gen, new_gen) == (1, 2)
    old = trained(c, generation=old_gen)
    new = trained(c, generation=new_gen)
    assert c.accept(new) and c.probe is new.probe and c.shown_generation == 2
    assert not c.accept(old)  # finished late: never shown
    assert c.probe is new.probe and c.shown_generation == 2
    assert not c.accept(Notice(1, "older notice"))
    assert c.accept(Notice(3, "only one class")) and c.probe is new.probe  # probe kept
    assert c.accept(new)  # the same generation again (e.g. apply after train) is current


def test_stack_job_segments_every_slice():
    c = SegmentController()
    image, scribbles = two_halves()
    first = trained(c, image, scribbles)
    stack = np.stack([image, image[:, ::-1]])
    job = c.stack_job(c.segmenter(DockOptions(classifier="linear")), stack, 1, first.probe,
                      c.next_generation(), "stack")
    result = run(job)
    assert result.slice_index is None and len(result.segmentations) == 2
    a, b = (s.labels for s in result.segmentations)
    np.testing.assert_array_equal(b, a[:, ::-1])  # the mirrored slice gives mirrored labels


def test_probe_compatibility_and_feature_switch():
    c = SegmentController()
    c.probe = trained(c).probe
    assert c.probe_mismatch(c.segmenter(DockOptions(classifier="rf"))) is None
    vit = DockOptions(mode="bilinear", backbone="test_dino_tiny16", weights="random")
    assert "classical" in c.probe_mismatch(c.segmenter(vit))
    assert needs_feature_switch(c.probe, vit.feature_spec())
    assert not needs_feature_switch(c.probe, DockOptions().feature_spec())
    other = SegmentController()
    other.set_class_names({5: "mine"})
    other.adopt_probe(c.probe)
    assert other.probe is c.probe
    assert other.class_names() == {5: "mine", 9: "class 9"}  # existing names win


# ---------------------------------------------------------------------------- autosave


def test_autosave_writes_and_saved_work_reads_back(tmp_path, monkeypatch):
    monkeypatch.delenv("DINOSEG_SYNC", raising=False)  # the background writer
    c = SegmentController()
    c.set_class_names({5: "dark", 9: "bright"})
    result = trained(c)
    _, scribbles = two_halves()
    store = ProjectStore(tmp_path / ".dinoseg")
    saver = Autosaver()
    assert not saver.save(store, "a.tif")  # nothing to save
    assert saver.save(store, "a.tif", scribbles=scribbles, classes=c.classes_json(),
                      segmentation=result.segmentations[0].labels, probe=result.probe)
    saver.flush()
    folder = tmp_path / ".dinoseg" / "images" / "a.tif"
    assert {p.name for p in folder.iterdir()} == {"scribbles.tif", "segmentation.tif",
                                                  "classes.json", "probe.npz"}
    saved = SavedWork(store, "a.tif")
    assert saved.folder == folder
    back = saved.scribbles(scribbles.shape)
    assert back is not None and back.dtype == scribbles.dtype
    np.testing.assert_array_equal(back, scribbles)
    np.testing.assert_array_equal(saved.segmentation(scribbles.shape),
                                  result.segmentations[0].labels)
    restored = SegmentController()
    assert restored.restore_classes(saved.classes())
    assert restored.class_names() == {5: "dark", 9: "bright"}
    probe, why = saved.probe()
    assert why == "" and probe.meta.class_values == [5, 9] and probe.kind == "linear"
    assert saved.scribbles((3, *scribbles.shape)) is None  # another image's shape


def test_later_saves_replace_earlier_ones_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    store, saver = ProjectStore(tmp_path), Autosaver()
    for v in range(1, 6):
        saver.save(store, "a.tif", scribbles=np.full((4, 4), v, np.uint8))
    saver.flush()
    np.testing.assert_array_equal(SavedWork(store, "a.tif").scribbles((4, 4)), 5)


def test_missing_or_damaged_files_read_as_absent(tmp_path):
    store = ProjectStore(tmp_path)
    saved = SavedWork(store, "a.tif")
    assert saved.classes() is None and saved.scribbles((4, 4)) is None
    assert saved.probe() == (None, "")
    saved.folder.mkdir(parents=True)
    (saved.folder / SCRIBBLES_FILE).write_bytes(b"not a tiff")
    (saved.folder / PROBE_FILE).write_bytes(b"garbage")
    assert saved.scribbles((4, 4)) is None
    probe, why = saved.probe()
    assert probe is None and "not a probe file" in why


def test_a_failed_save_is_told_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DINOSEG_SYNC", "1")  # inline writes
    blocker = tmp_path / "file"
    blocker.write_text("a file where the project folder should be")
    saver = Autosaver()
    saver.save(ProjectStore(blocker), "a.tif", classes={"1": "background"})
    error = saver.take_error()
    assert error.startswith("autosave failed:")
    assert saver.take_error() == ""
    saver.save(ProjectStore(tmp_path / "ok"), "a.tif", classes={"1": "background"})
    assert saver.take_error() == ""
    assert (tmp_path / "ok" / "images" / "a.tif" / CLASSES_FILE).exists()


def test_project_of_a_layer_is_next_to_its_file(tmp_path):
    image = tmp_path / "three.tif"
    image.write_bytes(b"")
    store, name = project_for(SimpleNamespace(source=SimpleNamespace(path=str(image))))
    assert name == "three.tif"
    assert store.image_dir(name) == tmp_path / ".dinoseg" / "images" / "three.tif"
    assert project_for(SimpleNamespace(source=SimpleNamespace(path=None))) is None
    assert project_for(SimpleNamespace(source=SimpleNamespace(path=str(tmp_path / "no.tif"))))\
        is None
    assert project_for(None) is None


def test_a_loaded_probe_s_feature_settings_are_reapplied(tmp_path):
    """A probe trained at ViT scale 1 with nearest copies (an old probe) keeps those settings
    in the dock, which has no field for them; another mode does not inherit them."""
    from headless.segment.workflow import FeatureSpec
    from napari_dinoseg._widgets.segment.controller import DockOptions, SegmentController

    class Meta:
        feature_mode = "hr"
        backbone = "test_dino_tiny16"
        feature_options = {"shifts": 4}  # no scale / upsample / vit_weight: a legacy probe
        class_values = [1, 2]
        class_names = ["a", "b"]

    class Probe:
        meta = Meta()

    c = SegmentController()
    c.adopt_probe(Probe())
    legacy = FeatureSpec.from_probe(Probe())
    opts = DockOptions(mode="hr", backbone="test_dino_tiny16", knobs=c.knobs,
                       knobs_mode=c.knobs_mode)
    spec = opts.feature_spec()
    assert (spec.scale, spec.upsample, spec.vit_weight) == (
        legacy.scale, legacy.upsample, legacy.vit_weight)
    assert spec != DockOptions(mode="hr", backbone="test_dino_tiny16").feature_spec()
    other = DockOptions(mode="hybrid", backbone="test_dino_tiny16", knobs=c.knobs,
                        knobs_mode=c.knobs_mode).feature_spec()
    assert other == DockOptions(mode="hybrid", backbone="test_dino_tiny16").feature_spec()
