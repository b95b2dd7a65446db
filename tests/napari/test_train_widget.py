"""The Train panel in a real viewer: launch a real worker process, follow it, cancel, resume.

Run under Xvfb: ``xvfb-run -a python -m pytest tests/napari/test_train_widget.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headless.jobs.runlog import read_log, read_status
from headless.train.synthetic import make_shapes_dataset

pytestmark = pytest.mark.gui


@pytest.fixture
def dataset(tmp_path) -> Path:
    make_shapes_dataset(tmp_path / "ds", n_per_class=6, size=24)
    return tmp_path / "ds"


@pytest.fixture
def widget(make_napari_viewer, monkeypatch, tmp_path, dataset):
    from napari_dinoseg._widgets.train.panel import TrainWidget

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker process: one thread on a busy box
    w = TrainWidget(make_napari_viewer())
    w.data_edit.setText(str(dataset))
    w.boxes_edit.setText(str(dataset / "boxes.json"))
    w.model_combo.setCurrentText("test_resnet_tiny")
    w.size_spin.setValue(24)
    w.batch_spin.setValue(4)
    w.workers_spin.setValue(0)
    w.epochs_spin.setValue(2)
    w.log_spin.setValue(1)
    w.lr_spin.setValue(0.05)
    w.augment_check.setChecked(False)
    w.device_combo.setCurrentText("cpu")
    w.crop_combo.setCurrentIndex(w.crop_combo.findData("localized"))
    w.thr_spin.setValue(0.8)
    w.root_edit.setText(str(tmp_path / "runs"))
    return w


def _run_dirs(w) -> list[Path]:
    root = w.runs_root()
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def test_launch_follow_plot_and_confusion(widget, qtbot, monkeypatch):
    spec = widget.build_spec()
    assert spec.crop.type == "localized" and spec.crop.thr == 0.8
    assert spec.model.type == "test_resnet_tiny" and spec.data.boxes.endswith("boxes.json")
    widget.launch_btn.click()
    assert widget.run_dir is not None and widget.handle is not None
    assert widget.handle.process.pid != __import__("os").getpid()  # its own process
    qtbot.waitUntil(lambda: widget.state == "completed", timeout=180_000)
    assert not widget.timer.isActive()
    assert widget.progress.maximum() == 6 and widget.progress.value() == 6
    loss = widget.loss_plot.series[0]
    assert loss.name == "train loss" and loss.xs == [1, 2, 3, 4, 5, 6]
    val = widget.acc_plot.series[1]
    assert val.xs == [3, 6] and all(0 <= y <= 1 for y in val.ys)
    conf = json.loads((widget.run_dir / "confusion_matrix.json").read_text())
    table = widget.confusion
    assert table.rowCount() == table.columnCount() == 3
    assert [table.horizontalHeaderItem(i).text() for i in range(3)] == conf["classes"]
    cells = [[int(table.item(i, j).text()) for j in range(3)] for i in range(3)]
    assert cells == conf["matrix"] and sum(map(sum, cells)) == 3
    assert "completed" in widget.status_label.text()
    assert not widget.cancel_btn.isEnabled() and not widget.resume_btn.isEnabled()

    opened = []
    monkeypatch.setattr("napari_dinoseg._widgets.train.panel.QDesktopServices.openUrl",
                        lambda url: opened.append(url.toLocalFile()))
    widget.open_btn.click()
    assert opened == [str(widget.run_dir)]

    # another panel (napari restarted) finds the run and shows it from its log alone
    from napari_dinoseg._widgets.train.panel import TrainWidget

    other = TrainWidget(widget.viewer)
    other.root_edit.setText(widget.root_edit.text())
    other.refresh_runs()
    assert other.follow_combo.count() == 1
    other._follow_chosen(0)
    assert other.state == "completed" and other.loss_plot.series[0].xs == loss.xs
    assert other.confusion.rowCount() == 3


def test_bad_input_is_reported_and_nothing_starts(widget, tmp_path):
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    for p in list((Path(widget.data_edit.text()) / "red_disc").iterdir())[:2]:
        (one / p.name).write_bytes(p.read_bytes())
    widget.data_edit.setText(str(tmp_path / "one"))
    widget.boxes_edit.setText("")
    widget.crop_combo.setCurrentIndex(widget.crop_combo.findData("random_resized"))
    widget.launch_btn.click()
    assert "not started" in widget.status_label.text()
    assert "only one class ('cats')" in widget.status_label.text()
    assert widget.run_dir is None and _run_dirs(widget) == []
    # a localized crop without boxes is refused by the spec itself
    widget.crop_combo.setCurrentIndex(widget.crop_combo.findData("localized"))
    widget.launch_btn.click()
    assert widget.run_dir is None and _run_dirs(widget) == []
    assert widget.launch_btn.isEnabled()
    text = widget.status_label.text()  # one line in the dock, in the form's words
    assert text.startswith("not started: ") and "needs boxes" in text and "\n" not in text
    assert "'boxes file'" in text and "data.boxes" not in text


def test_cancel_then_resume(widget, qtbot):
    widget.epochs_spin.setValue(60)
    widget.launch_btn.click()
    run_dir = widget.run_dir
    qtbot.waitUntil(lambda: widget._curves.step >= 1, timeout=120_000)
    assert widget.cancel_btn.isEnabled()
    widget.cancel_btn.click()
    qtbot.waitUntil(lambda: widget.state == "cancelled", timeout=60_000)
    stop = [r for r in read_log(run_dir) if r.get("reason") == "stop"]
    assert stop and stop[0]["step"] < 180 and (run_dir / "checkpoints" / "last.pt").is_file()
    assert widget.resume_btn.isEnabled()
    widget.resume_btn.click()
    qtbot.waitUntil(lambda: widget.state == "running", timeout=60_000)
    assert widget.handle.run_dir == run_dir
    widget.cancel_btn.click()  # stop again: the test need not wait for 180 steps
    qtbot.waitUntil(lambda: widget.state == "cancelled", timeout=60_000)
    resumes = [r["step"] for r in read_log(run_dir) if r["kind"] == "resume"]
    assert resumes and resumes[0] == stop[0]["step"]
    assert read_status(run_dir)["state"] == "cancelled"


def test_save_spec_is_the_cli_twin(widget, tmp_path):
    from headless.jobs.spec import load_spec

    path = widget.save_spec(tmp_path / "train.yaml")
    assert load_spec(path) == widget.build_spec()


def test_the_form_is_the_controllers_plain_values(widget, make_napari_viewer, dataset, tmp_path):
    from napari_dinoseg._widgets.train.controller import TrainForm, spec_dict
    from napari_dinoseg._widgets.train.panel import TrainWidget

    # the fixture's settings, typed as plain values: the same spec as the panel's
    plain = TrainForm(data_root=str(dataset), boxes=str(dataset / "boxes.json"),
                      model="test_resnet_tiny", image_size=24, batch_size=4, num_workers=0,
                      num_epochs=2, log_interval=1, lr=0.05, augment=False, device="cpu",
                      crop="localized", crop_thr=0.8)
    assert widget.form() == plain
    assert widget.spec_dict() == spec_dict(plain)
    # an untouched panel and the controller agree on every default
    assert TrainWidget(make_napari_viewer()).spec_dict() == spec_dict(TrainForm())
