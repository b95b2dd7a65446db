"""Stopping the docks' worker threads before Python exits.

A script (or napari's window) that ends while a dock's job still runs in its worker thread
went on to tear Qt down under that thread: the worker's last signal then met a deleted Qt
object, an exception in a Qt thread, and Qt aborted the process (SIGABRT, with a traceback at
exit). At exit, :func:`stop_workers` asks each running worker to stop (a job stops at its next
progress step) and waits for them, a bounded time, while Qt is still whole.
"""

from __future__ import annotations

import atexit

#: how long the exit waits for running jobs to reach their next progress step and stop (ms)
EXIT_WAIT_MS = 20_000

_registered: list[bool] = []


def stop_workers(wait_ms: int = EXIT_WAIT_MS) -> bool:
    """Ask every running worker thread (superqt's, which napari's ``thread_worker`` makes) to
    stop and wait up to ``wait_ms`` for the thread pool to drain; whether it did."""
    try:
        from qtpy.QtCore import QThreadPool
        from superqt.utils._qthreading import WorkerBase
    except Exception:  # noqa: BLE001 - no Qt / superqt: no workers either
        return True
    for worker in list(getattr(WorkerBase, "_worker_set", ())):
        try:
            worker.quit()
        except RuntimeError:  # its Qt side is already gone
            pass
    return bool(QThreadPool.globalInstance().waitForDone(wait_ms))


def stop_workers_at_exit() -> None:
    """Register :func:`stop_workers` to run at exit (once per session)."""
    if not _registered:
        _registered.append(True)
        atexit.register(stop_workers)
