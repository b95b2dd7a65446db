"""Running engine generators off the GUI thread, with a napari progress bar.

Every dock uses :func:`start`: the engine's progress generator runs in a ``thread_worker``;
``Progress`` items update a napari progress bar; the return value goes to ``on_result`` on the
GUI thread; an exception becomes ONE napari error notification with the one-line message (the
traceback sits behind the notification's button; nothing is re-raised into Qt, so a plain
``napari.Viewer()`` script never aborts). With the environment variable ``DINOSEG_SYNC=1`` the
generator runs synchronously, which tests use.
:class:`WorkerSlot` adds what each dock repeated around it: busy / idle and the error line.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from napari.utils import progress as napari_progress

from napari_dinoseg._widgets.common.collector import note_activity
from napari_dinoseg._widgets.common.sync import sync_mode

__all__ = ["WorkerSlot", "error_line", "is_weights_error", "notify_error", "start", "sync_mode"]


def error_line(exc: BaseException) -> str:
    """The first line of an engine error: what a notification and a status line show."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


Actions = Sequence[tuple[str, Callable[[Any], Any]]]
BAR_DELAY_MS = 300  # a threaded job's napari progress bar appears once it has run this long


def is_weights_error(exc: BaseException) -> bool:
    """Missing or unusable weights (backbone or SAM): the dock offers to pick a local file."""
    return any(c.__name__ == "WeightsError" for c in type(exc).__mro__)


def notify_error(description: str, exc: BaseException, actions: Actions = ()) -> Any:
    """One error notification ``"<description>: <first line>"``, the traceback behind its button.

    napari's own path for worker errors (re-raising in the GUI thread) shows a second
    notification, prints the traceback and aborts a script without ``napari.run()``.
    """
    from napari.utils.notifications import ErrorNotification, notification_manager

    note = ErrorNotification(exc)
    note.message = f"{description}: {error_line(exc)}"
    if actions:
        note.actions = list(actions)
    notification_manager.dispatch(note)
    return note


def start(
    gen: Generator[Any, None, Any],
    on_result: Callable[[Any], None],
    description: str,
    on_error: Callable[[BaseException], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    on_yield: Callable[[Any], None] | None = None,
    error_actions: Callable[[BaseException], Actions] | None = None,
) -> Any:
    """Run ``gen`` in a worker (or inline in sync mode); return the worker (None if inline).

    ``on_yield`` receives every yielded item on the GUI thread (e.g. one image's result of a
    folder run), after the progress bar has been updated. ``error_actions(exc)`` gives the
    buttons of the error notification (e.g. "Choose a local file…").
    """

    def fail(exc: BaseException) -> None:
        notify_error(description, exc, error_actions(exc) if error_actions else ())
        if on_error is not None:
            on_error(exc)

    # napari's progress bar costs the GUI thread 50-100 ms to make (a widget in the activity
    # dialog, and it processes events): a threaded job gets one only once it has run for
    # BAR_DELAY_MS, so quick jobs (reading an image, a queue) never pay for it
    state: dict[str, Any] = {"bar": None, "last": None, "done": False}

    def show(item: Any) -> None:
        bar = state["bar"]
        if bar.total != item.total:
            bar.total = item.total
        bar.n = item.done
        if getattr(item, "message", ""):
            bar.set_description(f"{description}: {item.message}")
        bar.refresh()

    def make_bar() -> None:
        if state["bar"] is None and not state["done"]:
            state["bar"] = napari_progress(total=0, desc=description)
            if state["last"] is not None:
                show(state["last"])

    def update(item: Any) -> None:
        # the dock's own handler first: refreshing napari's progress bar may process events,
        # and a result handled there must not be followed by this older item
        if on_yield is not None:
            on_yield(item)
        if getattr(item, "total", None):
            state["last"] = item
            if state["bar"] is not None:
                show(item)

    def done() -> None:
        state["done"] = True
        if state["bar"] is not None:
            state["bar"].close()
        if on_finish is not None:
            on_finish()

    if sync_mode():
        from headless.progress import run

        make_bar()
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

    from napari_dinoseg._widgets.common import session

    session.prepare()  # torch's first import GIL-free; full collections in the user's pauses

    def body() -> Generator[Any, None, Any]:
        # errors come back as a value: superqt drops RuntimeErrors ("aborted thread") and napari
        # re-raises the others in Qt (a second notification, or an abort without napari.run())
        try:
            return (yield from gen)
        except Exception as exc:  # noqa: BLE001 - shown once by ``fail``
            return _Failed(exc)

    def returned(value: Any) -> None:
        if isinstance(value, _Failed):
            fail(value.exc)
        else:
            on_result(value)

    from qtpy.QtCore import QTimer

    QTimer.singleShot(BAR_DELAY_MS, make_bar)
    worker = create_worker(body, _start_thread=False, _ignore_errors=True)
    worker.yielded.connect(update)
    worker.returned.connect(returned)
    worker.errored.connect(fail)
    worker.finished.connect(done)
    worker.finished.connect(lambda: note_activity(-1))
    note_activity(+1)
    worker.start()
    return worker


class _Failed:
    """An engine exception carried out of the worker as its return value."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


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
        #: model fields (:class:`~.fields.ModelFields`) whose weights a missing-weights error
        #: offers to replace with a local file, picked by ``fields.kind`` ('sam' / 'backbone')
        self.weights_fields: list[Any] = []

    def _error_actions(self, exc: BaseException) -> Actions:
        if not is_weights_error(exc) or not self.weights_fields:
            return ()
        kind = "sam" if "sam" in type(exc).__name__.lower() else "backbone"
        fields = next((f for f in self.weights_fields if getattr(f, "kind", "") == kind),
                      self.weights_fields[0])
        return [("Choose a local file…", lambda _note: fields.browse())]

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _failed(self, exc: BaseException) -> None:
        if self._on_status is not None:
            self._on_status(f"error: {error_line(exc)}")

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
                       on_finish=finished, on_yield=on_yield, error_actions=self._error_actions)
        if worker is not None and self.worker is True:
            self.worker = worker
        return worker
