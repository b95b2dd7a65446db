"""Worker errors as a user meets them: one notification, one line, no abort."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _failing_job():
    from headless.progress import Progress

    yield Progress(0, 1, "working")
    raise RuntimeError("weights not found: x.pth. Fix: choose a local file\nsecond line")


@pytest.mark.gui
def test_threaded_worker_error_is_one_notification_with_one_line(qtbot, monkeypatch):
    from napari.utils.notifications import notification_manager

    import napari_dinoseg._widgets.common.workers as workers

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    lines = []
    slot = workers.WorkerSlot(on_status=lines.append)
    try:
        worker = slot.start(_failing_job(), lambda r: None, "boxes")
        assert worker is not None  # threaded, not inline
        qtbot.waitUntil(lambda: not slot.busy, timeout=10_000)
        qtbot.wait(50)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    errors = [n for n in seen if str(n.severity).lower().endswith("error")]
    assert len(errors) == 1, [n.message for n in seen]
    assert errors[0].message == "boxes: weights not found: x.pth. Fix: choose a local file"
    assert isinstance(errors[0].exception, RuntimeError)  # the traceback behind the button
    assert lines == ["error: weights not found: x.pth. Fix: choose a local file"]


@pytest.mark.gui
def test_plain_viewer_script_survives_a_worker_error():
    """No ``napari.run()``: napari used to re-raise the error in Qt and the process aborted."""
    code = textwrap.dedent("""
        import napari
        from qtpy.QtWidgets import QApplication
        from napari_dinoseg._widgets.common.workers import start

        def job():
            yield
            raise ValueError("bad weights")

        viewer = napari.Viewer(show=False)
        w = start(job(), lambda r: None, "job")
        app = QApplication.instance()
        import time
        t0 = time.time()
        while (w.is_running or time.time() - t0 < 1.0) and time.time() - t0 < 20:
            app.processEvents()
            time.sleep(0.01)
        viewer.close()
        print("alive")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0 and "alive" in r.stdout, (r.returncode, r.stderr[-3000:])
    assert r.stderr.count("Traceback") == 0, r.stderr[-3000:]


@pytest.mark.gui
def test_script_that_ends_mid_job_exits_cleanly():
    """A script (or napari's window) that ended while a dock's job ran tore Qt down under the
    worker thread: its last signal met a deleted Qt object and Qt aborted (SIGABRT). At exit
    the job is asked to stop at its next progress step and waited for."""
    code = textwrap.dedent("""
        import time
        import napari
        from qtpy.QtWidgets import QApplication
        from headless.progress import Progress
        from napari_dinoseg._widgets.common.workers import start

        def job():  # a long last step (a model's forward pass): ends during the teardown
            yield Progress(0, 1, "working")
            time.sleep(1.5)
            return 1

        viewer = napari.Viewer(show=False)
        w = start(job(), lambda r: None, "job")
        app = QApplication.instance()
        t0 = time.time()
        while time.time() - t0 < 0.5:
            app.processEvents()
            time.sleep(0.01)
        viewer.close()
        print("running at exit", w.is_running)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert "running at exit True" in r.stdout, (r.stdout, r.stderr[-3000:])
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]


def test_missing_weights_notification_offers_a_local_file(monkeypatch):
    import napari_dinoseg._widgets.common.workers as workers
    from headless.features.backbones import WeightsError
    from headless.sam.weights import SamWeightsError

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    notes = []
    monkeypatch.setattr(workers, "notify_error", lambda d, e, actions=(): notes.append(actions))

    class Fields:
        def __init__(self, kind):
            self.kind, self.browsed = kind, 0

        def browse(self):
            self.browsed += 1

    sam, backbone = Fields("sam"), Fields("backbone")
    slot = workers.WorkerSlot()
    slot.weights_fields = [sam, backbone]

    def job(exc):
        yield
        raise exc

    slot.start(job(SamWeightsError("SAM vit_b weights not found")), lambda r: None, "sam")
    slot.start(job(WeightsError("dino_vits16 weights not found")), lambda r: None, "boxes")
    slot.start(job(ValueError("bad box")), lambda r: None, "boxes")
    assert [len(a) for a in notes] == [1, 1, 0]
    assert notes[0][0][0] == "Choose a local file…"
    notes[0][0][1](None)
    notes[1][0][1](None)
    assert (sam.browsed, backbone.browsed) == (1, 1)
