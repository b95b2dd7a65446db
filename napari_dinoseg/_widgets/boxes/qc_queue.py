"""The boxes dock's QC queue without Qt: which images the list shows, in which order, what's next.

The rows are :class:`headless.qc.queue.QueueRow` (one per image, task "boxes"), read from the
project by :func:`headless.qc.queue.build_queue` in a worker (:meth:`QueueView.job`): the GUI
thread only sorts and filters what is in memory. Between two reads the dock notes what it
changed itself (an edit, a verification, new boxes) with :meth:`QueueView.note`; a read that
started before such a note does not undo it. "Next to check" walks the shown order, skipping
verified images and wrapping around, so an image skipped once comes back at the end.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

from headless.qc.queue import QueueRow, sort_rows

#: The dock's sort choices -> build_queue's sort names.
SORTS = {"worst first": "uncertainty", "name": "name"}
#: The dock's status filter -> the statuses it shows (None: all).
FILTERS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "to check": ("none", "automatic", "edited"),
    "automatic": ("automatic",),
    "edited": ("edited",),
    "verified": ("verified",),
}
KEEP: Any = object()  # note(): keep the row's uncertainty as it is


class QueueView:
    """The folder's QC rows, the chosen sort and status filter, and stepping through them."""

    def __init__(self) -> None:
        self.rows: dict[str, QueueRow] = {}
        self.sort = "worst first"
        self.show = "all"
        self._seq = 0  # counts notes: a read started at seq N keeps notes made after N
        self._notes: dict[str, tuple[int, str, Any]] = {}  # name -> (seq, status, qc)

    def reset(self, names: Iterable[str]) -> None:
        """A new folder: every image, nothing known yet (status none, no uncertainty)."""
        self.rows = {n: QueueRow(n, "boxes", None, "none") for n in names}
        self._notes.clear()

    # -- reading the project (in a worker) ---------------------------------------------------
    def job(self, folder: str | Path) -> Generator[Any, None, tuple[list[QueueRow], int]]:
        """A progress generator reading the folder's QC rows; returns ``(rows, seq at start)``."""
        from headless.progress import Progress

        started = self._seq

        def read() -> Generator[Any, None, tuple[list[QueueRow], int]]:
            from headless.qc.queue import build_queue

            yield Progress(0, 1, "reading QC records")
            return build_queue(folder, tasks=["boxes"], include_verified=True, sort="name"), started

        return read()

    def set_rows(self, result: tuple[list[QueueRow], int]) -> None:
        """Take a read's rows; what the dock noted after the read started is applied again."""
        rows, started = result
        self.rows = {r.image: r for r in rows}
        for name, (seq, status, qc) in list(self._notes.items()):
            if seq > started:
                self.rows[name] = self._changed(name, status, qc)
            else:
                del self._notes[name]

    def note(self, name: str, status: str, qc: dict[str, Any] | None = KEEP) -> None:
        """Record a change the dock made itself: a new status, and a new QC record (or None)."""
        self._seq += 1
        self._notes[name] = (self._seq, status, qc)
        self.rows[name] = self._changed(name, status, qc)

    def _changed(self, name: str, status: str, qc: Any) -> QueueRow:
        old = self.rows.get(name, QueueRow(name, "boxes", None, "none"))
        if qc is KEEP:
            return QueueRow(name, old.task, old.uncertainty, status, old.reasons, old.signals)
        u = None if not qc or qc.get("uncertainty") is None else float(qc["uncertainty"])
        return QueueRow(name, old.task, u, status, tuple((qc or {}).get("reasons") or ()),
                        dict((qc or {}).get("signals") or {}))

    # -- what is shown -----------------------------------------------------------------------
    def row(self, name: str) -> QueueRow | None:
        return self.rows.get(name)

    def ordered(self) -> list[QueueRow]:
        """Every row in the chosen order (worst first: ties by name, no number last)."""
        return sort_rows(self.rows.values(), SORTS[self.sort])

    def shows(self, row: QueueRow) -> bool:
        wanted = FILTERS[self.show]
        return wanted is None or row.status in wanted

    def visible(self) -> list[QueueRow]:
        """The rows the list shows, in order."""
        return [r for r in self.ordered() if self.shows(r)]

    def to_check(self) -> int:
        """How many images are not verified yet."""
        return sum(1 for r in self.rows.values() if r.to_check)

    def step(self, current: str | None, forward: bool = True) -> str | None:
        """The shown image after (before) ``current`` in the shown order, None at the end."""
        if current is None:
            return None
        order = self.ordered()
        names = [r.image for r in order]
        if current not in names:
            return None
        i = names.index(current)
        around = order[i + 1:] if forward else order[:i][::-1]
        return next((r.image for r in around if self.shows(r)), None)

    def next_to_check(self, current: str | None) -> str | None:
        """The next shown, not verified image after ``current``, wrapping around (None: none)."""
        order = self.ordered()
        names = [r.image for r in order]
        i = names.index(current) if current in names else -1
        around = order[i + 1:] + order[:max(i, 0)]
        return next((r.image for r in around if r.to_check and self.shows(r)
                     and r.image != current), None)
