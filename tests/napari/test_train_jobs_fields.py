"""The Train dock's other jobs in a real viewer: fgvc (DINOv2 + IELT) and dino (self-supervised).

Choosing a job shows its own fields and hides the others'; the spec the dock builds is the one
``dinoseg train`` builds from the same values; a tiny dino run launched from the dock completes
and its loss curve is drawn; bad values give one line in the dock and start nothing.
Run under Xvfb (pytest-xvfb).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from headless.jobs.spec import build_spec as engine_build_spec
from headless.jobs.spec import load_spec, save_spec

pytestmark = pytest.mark.gui


def _images(folder: Path, n: int = 12, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), np.uint8)).save(
            folder / f"{i:02d}.png")
    return folder


#: the dino tests' tiny settings (as tests/train/ssl/test_dino_job.py), in the dock's form names
TINY_DINO = {"batch_size": 4, "num_workers": 0, "global_size": 32, "local_size": 16,
             "n_local": 1, "arch": "test_vit", "out_dim": 32, "head_hidden_dim": 32,
             "head_bottleneck_dim": 16, "warmup_epochs": 1, "warmup_teacher_temp_epochs": 1,
             "num_epochs": 1, "log_interval": 1}


@pytest.fixture
def pretext(tmp_path) -> Path:
    return _images(tmp_path / "pretext")


@pytest.fixture
def widget(make_napari_viewer, monkeypatch, tmp_path, qtbot):
    from napari_dinoseg._widgets.train.panel import TrainWidget

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker process: one thread on a busy box
    w = TrainWidget(make_napari_viewer())
    qtbot.addWidget(w)
    w.device_combo.setCurrentText("cpu")
    w.root_edit.setText(str(tmp_path / "runs"))
    return w


def _runs(w) -> list[Path]:
    root = w.runs_root()
    return sorted(root.iterdir()) if root.is_dir() else []


def _shown(page) -> bool:
    return not page.isHidden()


def test_the_job_combo_offers_every_job(widget):
    jobs = [widget.job_combo.itemData(i) for i in range(widget.job_combo.count())]
    assert jobs == ["classifier", "fgvc", "dino"]
    assert widget.job == "classifier"


def test_choosing_a_job_shows_its_fields_and_hides_the_others(widget, qtbot):
    widget.show()
    qtbot.waitExposed(widget)
    cls_pages = widget.job_pages["classifier"]
    for job in ("fgvc", "dino", "classifier"):
        widget.set_job(job)
        qtbot.wait(20)
        for other, pages in widget.job_pages.items():
            for page in pages.values():
                assert _shown(page) == (other == job), (job, other)
    widget.set_job("dino")
    qtbot.wait(20)
    assert widget.dino_fields.widgets["pretext"].isVisible()
    assert not widget.data_edit.isVisible() and not widget.model_combo.isVisible()
    assert not cls_pages["opt"].isVisible()
    # the common Run fields stay
    for w in (widget.runner_combo, widget.device_combo, widget.name_edit, widget.root_edit):
        assert w.isVisible()
    # each open section is tall enough for the job's page (nothing clipped after a switch)
    for section in widget.sections:
        content = section.content()
        assert content.maximumHeight() >= content.sizeHint().height()
    widget.set_job("fgvc")
    qtbot.wait(20)
    for section in widget.sections:
        content = section.content()
        assert content.maximumHeight() >= content.sizeHint().height()
    assert widget.fgvc_fields.widgets["backbone"].isVisible()
    assert not widget.dino_fields.widgets["pretext"].isVisible()


def test_untouched_job_fields_are_the_engines_defaults(widget, tmp_path):
    widget.set_job("dino")
    widget.dino_fields.set_values(pretext=str(tmp_path))
    assert widget.build_spec() == engine_build_spec(
        {"job": "dino", "device": "cpu", "data": {"pretext": str(tmp_path)}})
    widget.set_job("fgvc")
    widget.fgvc_fields.set_values(data_root=str(tmp_path))
    assert widget.build_spec() == engine_build_spec(
        {"job": "fgvc", "device": "cpu", "data": {"root": str(tmp_path)}})


def test_dino_spec_is_the_cli_twin(widget, pretext, tmp_path, capsys, monkeypatch):
    from headless.cli import main
    from headless.jobs.runners import resolve_spec_paths

    widget.set_job("dino")
    widget.dino_fields.set_values(pretext=str(pretext), **TINY_DINO)
    widget.dino_fields.set_values(teacher_temp=0.05, optimizer="sgd", lr=0.01, patch_size=16)
    widget.name_edit.setText("dock-dino")
    spec = widget.build_spec()
    assert spec.job == "dino" and spec.model.arch == "test_vit" and spec.opt.teacher_temp == 0.05
    assert spec.opt.optimizer == "sgd" and spec.opt.lr == 0.01 and spec.name == "dock-dino"
    assert spec == engine_build_spec(widget.spec_dict())
    # `dinoseg train SPEC --dry-run` of the dock's values prints the same resolved spec
    path = tmp_path / "dino.yaml"
    path.write_text(yaml.safe_dump(widget.spec_dict()))
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(path), "--dry-run"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == resolve_spec_paths(spec).model_dump(mode="json")
    assert load_spec(widget.save_spec(tmp_path / "saved.yaml")) == spec


def test_fgvc_spec_is_the_cli_twin(widget, tmp_path):
    widget.set_job("fgvc")
    widget.fgvc_fields.set_values(
        data_root=str(tmp_path / "cub"), layout="cub", backbone="test_dinov2_tiny14_reg",
        weights="random", image_size=56, batch_size=6, sub_batch=3, vote_perhead=4,
        total_num=12, dilations="1", dsm=False, merge_tokens=0, triplet_weight=0.5,
        optimizer="adamw", lr=1e-4, clip_grad=0.0, num_epochs=2, log_interval=1)
    spec = widget.build_spec()
    assert spec.job == "fgvc" and spec.data.layout == "cub" and spec.data.sub_batch == 3
    assert spec.ielt.dilations == [1] and not spec.ielt.dsm and spec.ielt.merge_tokens == 0
    assert spec.opt.lr == 1e-4 and spec.opt.clip_grad is None  # 0 = off
    assert spec.model.backbone == "test_dinov2_tiny14_reg" and spec.model.weights == "random"
    assert spec == engine_build_spec(widget.spec_dict())
    path = tmp_path / "fgvc.yaml"
    path.write_text(yaml.safe_dump(widget.spec_dict()))
    assert load_spec(path) == spec  # what `dinoseg train fgvc.yaml` reads
    assert load_spec(save_spec(spec, tmp_path / "saved.yaml")) == spec
    # the CLI's --set overrides of the same values give the same spec too
    sets = [f"data.root={tmp_path / 'cub'}", "data.layout=cub",
            "model.backbone=test_dinov2_tiny14_reg", "model.weights=random",
            "data.image_size=56", "data.batch_size=6", "data.sub_batch=3",
            "ielt.vote_perhead=4", "ielt.total_num=12", "ielt.dilations=[1]", "ielt.dsm=false",
            "ielt.merge_tokens=0", "loss.triplet_weight=0.5", "opt.type=adamw", "opt.lr=1e-4",
            "opt.clip_grad=null", "num_epochs=2", "log.interval=1", "device=cpu"]
    assert engine_build_spec({"job": "fgvc"}, sets) == spec


def test_dino_run_from_the_dock_completes_and_draws_its_loss(widget, pretext, qtbot):
    widget.set_job("dino")
    widget.dino_fields.set_values(pretext=str(pretext), **TINY_DINO)
    widget.launch_btn.click()
    assert widget.run_dir is not None and widget.handle is not None
    qtbot.waitUntil(lambda: widget.state == "completed", timeout=40_000)
    assert widget.controller.job == "dino" and not widget.timer.isActive()
    loss = widget.loss_plot.series
    assert [s.name for s in loss] == ["train loss"] and loss[0].xs == [1, 2, 3]
    assert all(np.isfinite(loss[0].ys))
    assert widget.progress.maximum() == 3 and widget.progress.value() == 3
    # no classes, no k-NN folder: no accuracy curve and no confusion matrix
    assert widget.acc_plot.isHidden() and widget.confusion.isHidden()
    assert widget.loss_plot.isVisibleTo(widget)
    text = widget.status_label.text()
    assert "completed" in text and "step 3/3" in text and "loss " in text and "nan" not in text

    # another dock (napari restarted) follows the run from its folder alone
    from napari_dinoseg._widgets.train.panel import TrainWidget

    other = TrainWidget(widget.viewer)
    qtbot.addWidget(other)
    other.root_edit.setText(widget.root_edit.text())
    other.refresh_runs()
    assert other.follow_combo.count() == 1
    other._follow_chosen(0)
    assert other.state == "completed" and other.loss_plot.series[0].xs == [1, 2, 3]
    assert other.acc_plot.isHidden() and other.confusion.isHidden()


def test_bad_dino_values_give_one_line_and_start_nothing(widget, tmp_path):
    widget.set_job("dino")
    widget.dino_fields.set_values(**TINY_DINO)
    widget.launch_btn.click()  # no pretext folder: refused before anything (not the cwd)
    text = widget.status_label.text()
    assert text.startswith("not started: 'pretext folder' is empty") and "\n" not in text
    assert widget.run_dir is None and _runs(widget) == []
    (tmp_path / "empty").mkdir()
    widget.dino_fields.set_values(pretext=str(tmp_path / "empty"))
    widget.launch_btn.click()  # a folder without images: the job's preflight says so
    text = widget.status_label.text()
    assert text.startswith("not started: no images found in pretext folder") and "\n" not in text
    assert widget.run_dir is None and _runs(widget) == []
    _images(tmp_path / "ok", n=3)
    widget.dino_fields.set_values(pretext=str(tmp_path / "ok"), global_size=40)
    widget.launch_btn.click()  # 40 is not a multiple of the patch (16): in the dock's words
    text = widget.status_label.text()
    assert "'global crop' (40) is not a multiple of the ViT patch" in text
    assert widget.run_dir is None and _runs(widget) == [] and widget.launch_btn.isEnabled()


def test_bad_fgvc_values_give_one_line_in_the_docks_words(widget, tmp_path):
    widget.set_job("fgvc")
    widget.launch_btn.click()
    assert widget.status_label.text().startswith("not started: 'dataset folder' is empty")
    widget.fgvc_fields.set_values(data_root=str(tmp_path), batch_size=31)
    widget.launch_btn.click()
    text = widget.status_label.text()
    assert "'batch size'=31 is not divisible by 3" in text and "data.batch_size" not in text
    assert "\n" not in text and widget.run_dir is None and _runs(widget) == []
    widget.fgvc_fields.set_values(dilations="1, x")
    widget.launch_btn.click()
    assert "'dilations' must be whole numbers" in widget.status_label.text()


@pytest.mark.parametrize("job", ["fgvc", "dino"])
def test_each_jobs_fields_fit_a_1280x800_window(make_napari_viewer, qtbot, job):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1280, 800)
    panel = viewer.window.add_plugin_dock_widget("napari-dinoseg", "Train")[1]
    width = panel.scroll_area.viewport().width()
    panel.set_job(job)
    for _ in range(20):
        QApplication.processEvents()
    qtbot.wait(50)
    area = panel.scroll_area
    assert win.height() <= 800 and win.width() <= 1280
    assert area.widget().minimumSizeHint().width() <= area.viewport().width() + 1
    assert area.widget().width() <= area.viewport().width() + 1  # nothing cut off at the right
    assert area.viewport().width() <= width + 1  # a job's long choices do not widen the dock


def test_every_form_field_has_a_widget(widget):
    from napari_dinoseg._widgets.train.job_fields import form_field_names
    from napari_dinoseg._widgets.train.job_forms import DinoForm, FgvcForm

    assert set(widget.job_fields("fgvc").widgets) == form_field_names(FgvcForm)
    assert set(widget.job_fields("dino").widgets) == form_field_names(DinoForm)
    with pytest.raises(KeyError, match="no field 'lrr'"):
        widget.dino_fields.set_values(lrr=0.1)
