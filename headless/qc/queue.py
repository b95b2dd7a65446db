"""The QC queue of a folder: its images' automatic results, the ones most in need of a human first.

One row per (image, task). Where the numbers come from:

* boxes: the record in ``qc.json``, else ``boxes.json`` ``details["qc"]`` (the compute path
  saves it there); when both exist the newer one. The status is the box curation's
  (none / automatic / edited / verified). **Every image of the folder has a boxes row** (its
  boxes can always be curated): one without a record has ``uncertainty=None`` and sorts last.
* sam / segment: a row only where ``qc.json`` holds a record (there is nothing to check
  otherwise); status "verified" once :func:`headless.qc.store.mark_qc_verified` ran, else
  "automatic".

Verified rows are left out unless ``include_verified`` (or "verified" is among ``statuses``), so
a user's verification moves an image out of the queue. Twin front ends: the boxes dock's queue
controls and ``dinoseg qc``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headless.qc.store import BOXES, TASKS, check_task, load_qc
from headless.store import ProjectStore, atomic_write_text

NONE, AUTOMATIC, EDITED, VERIFIED = "none", "automatic", "edited", "verified"
STATUSES = (NONE, AUTOMATIC, EDITED, VERIFIED)
SORTS = ("uncertainty", "name")
CSV_COLUMNS = ("image", "task", "uncertainty", "status", "reasons", "signals")


@dataclass(frozen=True)
class QueueRow:
    """One image's result of one task, as the queue lists it."""

    image: str
    task: str
    uncertainty: float | None  # None: no QC record (sorts last)
    status: str
    reasons: tuple[str, ...] = ()
    signals: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def to_check(self) -> bool:
        return self.status != VERIFIED


def _boxes_row(name: str, store: ProjectStore, qc: dict[str, Any]) -> QueueRow:
    from headless.boxes.curation import BoxCuration
    from headless.boxes.formats import BoxFormatError

    try:
        state = BoxCuration(store).load(name)
    except BoxFormatError:
        state = None  # a damaged boxes.json: status none, as BoxCuration.status says
    record = qc["tasks"].get(BOXES)
    if state is not None:
        saved = state.details.get("qc")
        if isinstance(saved, dict):
            # without its own time, a record in boxes.json dates from the automatic save
            when = str(saved.get("updated") or (state.updated if state.status == AUTOMATIC
                                                else ""))
            if record is None or when > str(record.get("updated", "")):
                record = saved
    return _row(name, BOXES, record, state.status if state is not None else NONE)


def _row(name: str, task: str, record: dict[str, Any] | None, status: str) -> QueueRow:
    u, reasons, signals = None, (), {}
    if record is not None:
        try:
            u = float(record["uncertainty"])
        except (KeyError, TypeError, ValueError):
            u = None
        reasons = tuple(str(r) for r in record.get("reasons") or ())
        signals = dict(record.get("signals") or {})
    return QueueRow(name, task, u, status, reasons, signals)


def _sort_key(sort: str):
    order = {t: i for i, t in enumerate(TASKS)}
    if sort == "name":
        return lambda r: (r.image, order.get(r.task, 99))
    return lambda r: (r.uncertainty is None, -(r.uncertainty or 0.0), r.image,
                      order.get(r.task, 99))


def sort_rows(rows: Iterable[QueueRow], sort: str = "uncertainty") -> list[QueueRow]:
    """Worst first (ties by image name, rows without a number last), or by image name."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
    return sorted(rows, key=_sort_key(sort))


def build_queue(
    folder: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
    sort: str = "uncertainty",
    include_verified: bool = False,
) -> list[QueueRow]:
    """The QC rows of a folder's images (see the module's docstring for what is listed).

    ``ImageError`` (a ``ValueError``) when ``folder`` is not a folder; ``ValueError`` for an
    unknown task, status or sort.
    """
    from headless.images import list_images

    tasks = list(dict.fromkeys(tasks)) if tasks else list(TASKS)
    for t in tasks:
        check_task(t)
    wanted = set(statuses) if statuses else None
    for s in wanted or ():
        if s not in STATUSES:
            raise ValueError(f"unknown status {s!r}; choose one of {', '.join(STATUSES)}")
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
    keep_verified = include_verified or (wanted is not None and VERIFIED in wanted)
    listing = list_images(folder)
    store = ProjectStore.for_folder(folder)
    rows: list[QueueRow] = []
    for path in listing.images:
        qc = load_qc(path.name, store)
        for task in tasks:
            if task == BOXES:
                row = _boxes_row(path.name, store, qc)
            elif task in qc["tasks"]:
                status = VERIFIED if task in qc["verified"] else AUTOMATIC
                row = _row(path.name, task, qc["tasks"][task], status)
            else:
                continue
            if (row.status == VERIFIED and not keep_verified) or (
                    wanted is not None and row.status not in wanted):
                continue
            rows.append(row)
    return sort_rows(rows, sort)


def format_uncertainty(u: float | None) -> str:
    return "" if u is None else f"{u:.4f}"


def write_queue_csv(rows: Iterable[QueueRow], path: str | Path) -> Path:
    """Write rows as CSV (``image,task,uncertainty,status,reasons,signals``), atomically.

    ``reasons`` are joined with "; ", ``signals`` are one JSON object; no number -> empty cell.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.image, r.task, format_uncertainty(r.uncertainty), r.status,
                    "; ".join(r.reasons), json.dumps(r.signals, sort_keys=True)])
    return atomic_write_text(path, buf.getvalue())
