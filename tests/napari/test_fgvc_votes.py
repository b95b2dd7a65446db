"""The fine-grained votes dock: its controller without Qt, then the dock in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

from headless.jobs.runners import resolve_spec_paths
from headless.jobs.runs import new_run_dir
from headless.jobs.spec import build_spec
from headless.progress import run
from headless.train.fgvc import job
from headless.train.fgvc.synthetic import make_planted_fgvc, planted_image


@pytest.fixture(scope="module")
def fgvc_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("votes")
    data = make_planted_fgvc(base / "data", n_classes=3, n_train=4, n_test=2, size=64)
    spec = resolve_spec_paths(build_spec({
        "job": "fgvc", "device": "cpu", "num_epochs": 1,
        "data": {"root": str(data), "image_size": 64, "batch_size": 6, "num_workers": 0},
        "model": {"backbone": "test_dino_tiny16", "weights": "random"},
        "ielt": {"total_num": 4, "vote_perhead": 2}}))
    run_dir = new_run_dir(spec, base / "runs")
    assert job.run(spec, run_dir) == "completed"
    return run_dir


def test_controller_builds_a_stack_over_the_image(fgvc_run):
    from napari_dinoseg._widgets.fgvc.controller import (
        META_KEY,
        VotesController,
        image_plane,
        top_text,
        vote_layer,
    )

    c = VotesController()
    img = planted_image(0, np.random.default_rng(1), 64)[:, :32]  # 64 x 32
    view = run(c.explain(fgvc_run, image_plane(img, True)))
    data, kw = vote_layer(view, "photo", fgvc_run)
    assert data.shape == (1, 4, 4) and kw["scale"] == (1.0, 16.0, 8.0)
    assert kw["translate"] == (0.0, 7.5, 3.5)  # cell centres over image pixels
    assert kw["metadata"][META_KEY]["top"] == view.top and len(view.top) == 3
    assert top_text(view).startswith("1. pattern_")
    assert c._run[0] == fgvc_run  # cached: the next image does not reload the model
    with pytest.raises(ValueError, match="Choose a trained fgvc run"):
        c.resolve("  ")
    assert image_plane(np.zeros((3, 5, 6)), False).shape == (5, 6)


@pytest.mark.gui
def test_dock_adds_the_vote_stack(fgvc_run, make_napari_viewer, monkeypatch):
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    from napari_dinoseg._widgets.fgvc.panel import FgvcVotesWidget

    viewer = make_napari_viewer()
    img = planted_image(1, np.random.default_rng(2), 64)
    viewer.add_image(img, name="photo", rgb=True)
    w = FgvcVotesWidget(viewer)
    w.run_edit.setText(str(fgvc_run))
    w.show_votes()
    layer = viewer.layers["votes: photo"]
    assert layer.data.shape == (1, 4, 4) and tuple(layer.scale) == (1.0, 16.0, 16.0)
    assert w.top_label.text().startswith("1. pattern_") and "error" not in w.status.text()
    w.run_edit.setText(str(fgvc_run.parent / "nope"))
    w.show_votes()
    assert w.status.text().startswith("error: no run")
