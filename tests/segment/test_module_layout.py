"""The split modules keep their old import paths: the old module hands out the same objects."""

from __future__ import annotations

import importlib

import pytest

OLD_TO_NEW = {
    "headless.segment.probe": (
        "headless.segment.probe.meta", "headless.segment.probe.models",
        "headless.segment.probe.trees", "headless.segment.probe.training",
        "headless.segment.probe.files",
    ),
    "headless.segment.workflow": (
        "headless.segment.workflow.scribbles", "headless.segment.workflow.feature_source",
        "headless.segment.workflow.segmenter", "headless.segment.workflow.apply",
    ),
    "headless.boxes.formats": (
        "headless.boxes.formats.common", "headless.boxes.formats.coco",
        "headless.boxes.formats.voc", "headless.boxes.formats.csvfile",
        "headless.boxes.formats.dispatch",
    ),
    "headless.jobs.runners": (  # keeps the runner table, launch / resume / follow
        "headless.jobs.runners", "headless.jobs.runner_base", "headless.jobs.local_runners",
        "headless.jobs.slurm_runner",
    ),
    "headless.sam": (
        "headless.sam.specs", "headless.sam.weights", "headless.sam.model",
        "headless.sam.automatic", "headless.sam.box_prompts", "headless.sam.masks",
        "headless.sam.choice",
    ),
}


@pytest.mark.parametrize("old", sorted(OLD_TO_NEW))
def test_old_paths_re_export_the_new_objects(old):
    module = importlib.import_module(old)
    assert module.__all__, old
    homes = [importlib.import_module(n) for n in OLD_TO_NEW[old]]
    for name in module.__all__:
        obj = getattr(module, name)
        assert any(getattr(h, name, None) is obj for h in homes), (old, name)
        if callable(obj):  # defined in one of the new modules, not left behind in the old one
            assert obj.__module__ in OLD_TO_NEW[old], (old, name, obj.__module__)


def test_probe_file_and_workflow_names_are_unchanged():
    probe = importlib.import_module("headless.segment.probe")
    workflow = importlib.import_module("headless.segment.workflow")
    assert probe.FORMAT == "napari-dinoseg probe" and probe.FORMAT_VERSION == 1
    assert probe.CLASSIFIERS == ("linear", "rf")
    assert workflow.FEATURE_MODES == ("classical", "bilinear", "hr", "hybrid", "patch")
    assert workflow.DEFAULT_CLASSIFIER["classical"] == "rf"
