"""Running engine generators off the GUI thread, with a napari progress bar.

Every dock uses :func:`start`: the engine's progress generator runs in a ``thread_worker``;
``Progress`` items update a napari progress bar; the return value goes to ``on_result`` on the
GUI thread; an exception becomes a napari error notification (napari never crashes). With the
environment variable ``DINOSEG_SYNC=1`` the generator runs synchronously, which tests use.
:class:`WorkerSlot` adds what each dock repeated around it: busy / idle and the error line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from typing import Any

from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error


def sync_mode() -> bool:
    return os.environ.get("DINOSEG_SYNC", "0") == "1"


def start(
    gen: Generator[Any, None, Any],
    on_result: Callable[[Any], None],
    description: str,
    on_error: Callable[[BaseException], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    on_yield: Callable[[Any], None] | None = None,
) -> Any:
    """Run ``gen`` in a worker (or inline in sync mode); return the worker (None if inline).

    ``on_yield`` receives every yielded item on the GUI thread (e.g. one image's result of a
    folder run), after the progress bar has been updated.
    """

    def fail(exc: BaseException) -> None:
        show_error(f"{description}: {exc}")
        if on_error is not None:
            on_error(exc)

    bar = napari_progress(total=0, desc=description)

    def update(item: Any) -> None:
        total = getattr(item, "total", None)
        if total:
            if bar.total != total:
                bar.total = total
            bar.n = item.done
            if getattr(item, "message", ""):
                bar.set_description(f"{description}: {item.message}")
            bar.refresh()
        if on_yield is not None:
            on_yield(item)

    def done() -> None:
        bar.close()
        if on_finish is not None:
            on_finish()

    if sync_mode():
        from headless.progress import run

        try:
            result = run(gen, update)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never raised into Qt
            done()
            fail(exc)
            return None
        done()
        on_result(result)
        return None

    from napari.qt.threading import create_worker

    worker = create_worker(lambda: (yield from gen), _start_thread=False)
    worker.yielded.connect(update)
    worker.returned.connect(on_result)
    worker.errored.connect(fail)
    worker.finished.connect(done)
    worker.start()
    return worker


class WorkerSlot:
    """The one engine job a dock runs at a time, around :func:`start`.

    Every dock did the same: mark itself busy (buttons off), start the job, and on finish (or
    failure) mark itself idle again, writing ``error: …`` into its status line when the job
    failed (the napari notification comes from :func:`start`). ``on_busy(busy)`` is where a
    dock enables / disables its buttons; ``on_status(text)`` is its status line (optional).
    ``worker`` is the running worker, ``True`` while an inline (sync-mode) run is going, and
    ``None`` when idle.
    """

    def __init__(
        self,
        on_busy: Callable[[bool], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self._on_busy = on_busy
        self._on_status = on_status
        self.worker: Any = None

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _failed(self, exc: BaseException) -> None:
        if self._on_status is not None:
            self._on_status(f"error: {exc}")

    def start(
        self,
        gen: Generator[Any, None, Any],
        on_result: Callable[[Any], None],
        description: str,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        on_yield: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run ``gen`` as :func:`start` does; ``on_error`` replaces the ``error: …`` status."""

        def finished() -> None:
            self.worker = None
            if self._on_busy is not None:
                self._on_busy(False)

        self.worker = True  # busy until the worker (or the inline run) finishes
        if self._on_busy is not None:
            self._on_busy(True)
        worker = start(gen, on_result, description, on_error=on_error or self._failed,
                       on_finish=finished, on_yield=on_yield)
        if worker is not None and self.worker is True:
            self.worker = worker
        return worker
