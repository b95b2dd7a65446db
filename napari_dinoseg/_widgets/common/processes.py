"""Running GIL-holding engine steps in a helper process, so the viewer keeps painting.

A worker thread frees the GUI thread only while the work releases Python's GIL. pydensecrf's
inference does not: a dense CRF on a 1024 x 1024 image froze napari for 17 s although it ran in
a worker. A :class:`HelperProcess` hands such a step (a top-level engine function and plain
arrays) to one long-lived ``spawn`` process that its owner (a dock's controller) starts on first
use and stops when it closes; with ``DINOSEG_SYNC=1`` the step runs inline. Plain Python (no Qt).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Any


class HelperProcess:
    """One helper process, started on first use, replaced once if it died."""

    def __init__(self) -> None:
        self._pool: Any = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._pool is not None

    def _executor(self) -> Any:
        with self._lock:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"))
                atexit.register(self.shutdown)
            return self._pool

    def shutdown(self) -> None:
        """Stop the helper process (the owner closes; at exit)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def run(self, fn: Callable[..., Any], *args: Any, inline: bool | None = None) -> Any:
        """``fn(*args)`` in the helper (``fn`` importable by name; arguments picklable).

        ``inline`` (default: ``DINOSEG_SYNC=1``) runs it here instead. A helper that died
        (killed, out of memory) is replaced and the call is tried once more there.
        """
        from concurrent.futures.process import BrokenProcessPool

        if inline is None:
            from napari_dinoseg._widgets.common.sync import sync_mode

            inline = sync_mode()
        if inline:
            return fn(*args)
        try:
            return self._executor().submit(fn, *args).result()
        except BrokenProcessPool:
            self.shutdown()
            return self._executor().submit(fn, *args).result()
