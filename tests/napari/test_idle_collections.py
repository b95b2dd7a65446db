"""CPython's full collections moved to the user's pauses (200-470 ms each with napari and torch
loaded: they froze the viewer in the middle of a stroke or a result)."""

from __future__ import annotations

import gc

import pytest

from napari_dinoseg._widgets.common import collector as C

pytestmark = pytest.mark.gui


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idle(qtbot, monkeypatch):
    """An installed IdleCollections on a fake clock and pointer; uninstalled after."""
    clock = Clock()
    pointer = {"state": ((10, 10), False)}
    monkeypatch.setattr(C, "_activity", {"running": 0, "last": 0.0})
    monkeypatch.setattr(C.time, "monotonic", clock)
    collections = C.IdleCollections(clock=clock, pointer=lambda: pointer["state"])
    before = gc.get_threshold()
    assert collections.install()
    collections._timer.stop()  # the test calls check() itself
    yield collections, clock, pointer
    collections.uninstall()
    assert gc.get_threshold() == before


def make_due() -> None:
    """Ten collections of generation 1 since the last full one (CPython's third threshold)."""
    gc.collect()
    for _ in range(10):
        gc.collect(1)


def test_install_takes_full_collections_and_uninstall_gives_them_back(idle):
    collections, _, _ = idle
    t0, t1, t2 = gc.get_threshold()
    assert t2 >= 2**30 and (t0, t1) == collections._thresholds[:2]
    assert C.IdleCollections().install() is False  # thresholds no longer CPython's: left alone


def test_not_installed_where_the_host_turned_the_collector_off(qtbot):
    gc.disable()
    try:
        assert C.IdleCollections().install() is False
    finally:
        gc.enable()


def test_full_collection_waits_for_a_pause(idle):
    collections, clock, pointer = idle
    make_due()
    assert collections.due()
    assert not collections.check()  # the pointer was just seen: not idle yet
    clock.now += C.IDLE_S + C.MIN_GAP_S
    pointer["state"] = ((12, 10), False)  # it moved
    assert not collections.check()
    clock.now += C.IDLE_S / 2
    assert not collections.check()  # still for less than IDLE_S
    pointer["state"] = ((12, 10), True)  # a button held down (a stroke in progress)
    clock.now += C.IDLE_S
    assert not collections.check()
    pointer["state"] = ((12, 10), False)
    clock.now += C.IDLE_S / 2
    assert not collections.check()
    clock.now += C.IDLE_S
    seen: list[int] = []
    gc.callbacks.append(lambda phase, info: seen.append(info["generation"])
                        if phase == "stop" else None)
    try:
        assert collections.check()
    finally:
        gc.callbacks.pop()
    assert seen == [2] and collections.collections == 1 and not collections.due()


def test_no_idle_collection_while_a_job_runs_nor_twice_in_min_gap(idle):
    collections, clock, _ = idle
    make_due()
    clock.now += C.MIN_GAP_S + C.IDLE_S
    C.note_activity(+1)  # a dock's job started
    clock.now += C.IDLE_S * 3
    assert not collections.check()
    C.note_activity(-1)  # ... and ended now: activity
    clock.now += C.IDLE_S / 2
    assert not collections.check()
    clock.now += C.IDLE_S
    assert collections.check()
    make_due()
    clock.now += C.IDLE_S * 2
    assert not collections.check()  # idle again, but one ran less than MIN_GAP_S ago


def test_a_collection_at_the_latest_after_max_gap(idle):
    collections, clock, pointer = idle
    make_due()
    for step in range(int(C.MAX_GAP_S // 10)):  # in constant use: the pointer always moving
        clock.now += 10
        pointer["state"] = ((step, 0), False)
        if collections.check():
            break
    assert collections.collections == 1
    assert clock.now - 1000.0 >= C.MAX_GAP_S


def test_cpython_starts_no_full_collection_while_installed(idle):
    """Allocations that would have set one off: none runs until the pause."""
    collections, clock, _ = idle
    collections.check()  # the pointer seen once
    gc.collect()
    seen: list[int] = []
    gc.callbacks.append(lambda phase, info: seen.append(info["generation"])
                        if phase == "stop" else None)
    try:
        keep = [[i] for i in range(300_000)]  # survivors: young collections, many of them
        assert seen and 2 not in seen and collections.due()
        clock.now += C.MIN_GAP_S + C.IDLE_S
        assert collections.check() and seen[-1] == 2
    finally:
        gc.callbacks.pop()
    del keep


def test_install_once_per_session_and_opt_out(qtbot, monkeypatch):
    monkeypatch.setattr(C, "_installed", [])
    monkeypatch.setenv("DINOSEG_GC", "python")
    assert C.install_idle_collections() is None
    monkeypatch.setenv("DINOSEG_GC", "")
    monkeypatch.setenv("DINOSEG_SYNC", "1")
    assert C.install_idle_collections() is None  # tests' sync mode
    monkeypatch.delenv("DINOSEG_SYNC")
    first = C.install_idle_collections()
    try:
        assert first is not None and C.install_idle_collections() is first
        assert first._timer.isActive()
    finally:
        first.uninstall()


def test_typing_in_a_field_counts_as_input(qtbot):
    """Typing moves no pointer: the focused field's text (a line edit's, a text document's
    revision) is part of what the collector watches."""
    from qtpy.QtWidgets import QLineEdit, QPlainTextEdit

    line, text = QLineEdit(), QPlainTextEdit()
    qtbot.addWidget(line)
    qtbot.addWidget(text)
    assert C._typed(None) is None
    before = C._typed(line)
    qtbot.keyClicks(line, "runs")
    assert C._typed(line) != before and C._typed(line) == C._typed(line)
    before = C._typed(text)
    qtbot.keyClicks(text, "x")
    assert C._typed(text) != before
    state = C._pointer_state()
    assert len(state) == 3 and isinstance(state[1], bool)


def test_a_real_session_collects_in_a_pause_not_during_a_job(make_napari_viewer, qtbot,
                                                             monkeypatch):
    """Installed by a dock opening (threaded, as for a user), on Qt's own timer and pointer:
    the due collection waits while a job runs, and runs once the session is still."""
    from napari_dinoseg._widgets.segment.panel import SegmentWidget

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    monkeypatch.setenv("DINOSEG_GC", "")
    monkeypatch.setattr(C, "_installed", [])
    monkeypatch.setattr(C, "CHECK_MS", 50)
    monkeypatch.setattr(C, "IDLE_S", 0.3)
    monkeypatch.setattr(C, "MIN_GAP_S", 0.0)
    monkeypatch.setattr(C, "_activity", {"running": 0, "last": 0.0})
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)  # the dock's warm-up call installs it
    qtbot.addWidget(widget)
    try:
        collections = C._installed[0] if C._installed else None
        assert collections is not None and collections._timer.isActive()
        from napari_dinoseg._widgets.common.warmup import warmed_up

        qtbot.waitUntil(warmed_up, timeout=120_000)  # (its imports run with the collector off)
        C.note_activity(+1)  # a job runs
        make_due()
        qtbot.wait(800)
        assert collections.collections == 0 and collections.due()
        C.note_activity(-1)
        qtbot.waitUntil(lambda: collections.collections == 1, timeout=5000)
        assert not collections.due()
    finally:
        for installed in C._installed:
            installed.uninstall()
