"""Per-image QC records in the project folder: ``<project>/images/<name>/qc.json``.

::

    {"version": 1,
     "tasks": {"boxes": rec, "sam": rec, "segment": rec},
     "verified": {"sam": "<iso time>", "segment": "<iso time>"}}

``rec`` is an :mod:`headless.qc.uncertainty` dict plus ``"updated"``. Each task is merged in on
its own (saving "sam" keeps "boxes"), under one lock, written atomically through
:class:`headless.store.ProjectStore`. Boxes are verified where their curation lives
(``boxes.json`` status, :class:`headless.boxes.curation.BoxCuration`), so that verifying an image
in the boxes dock and in ``dinoseg qc --verify`` is one and the same thing; "sam" and "segment"
verification is recorded here. Saving a new record does not undo a verification.

The records are recomputable; the verification times are a user's work: a damaged file reads as
empty (logged), and is moved aside, not overwritten, at the next save.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from headless.store import ProjectStore

log = logging.getLogger(__name__)

QC_FILE = "qc.json"
FORMAT_VERSION = 1
BOXES, SAM, SEGMENT = "boxes", "sam", "segment"
TASKS = (BOXES, SAM, SEGMENT)

# a worker saving records and the GUI thread saving a verification may meet on one file
_LOCK = threading.RLock()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def empty_qc() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "tasks": {}, "verified": {}}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown QC task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def _resolve(image: str | Path, store: ProjectStore | None) -> tuple[str, ProjectStore]:
    """``(image file name, its project)``; a bare name needs the store."""
    name = Path(str(image)).name
    if store is None:
        if Path(str(image)).parent == Path("."):
            raise ValueError(f"{image}: a bare image name needs its project store")
        store = ProjectStore.for_image(image)
    return name, store


def _read(name: str, store: ProjectStore) -> tuple[dict[str, Any], bool]:
    """``(qc dict, whether the file was damaged)``; a missing file is an empty record."""
    path = store.find(name, QC_FILE)  # a read-only image folder's own project too
    if not path.exists():
        return empty_qc(), False
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        tasks, verified = d.get("tasks") or {}, d.get("verified") or {}
        if not isinstance(tasks, dict) or not isinstance(verified, dict):
            raise ValueError("'tasks' and 'verified' must be objects")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        log.warning("%s: QC record is damaged (%s); treated as empty", path, exc)
        return empty_qc(), True
    out = empty_qc()
    out["tasks"] = {k: v for k, v in tasks.items() if k in TASKS and isinstance(v, dict)}
    out["verified"] = {k: str(v) for k, v in verified.items() if k in TASKS and v}
    return out, False


def load_qc(image_path_or_name: str | Path, store: ProjectStore | None = None) -> dict[str, Any]:
    """An image's QC dict (``version``, ``tasks``, ``verified``); never raises on a bad file."""
    name, store = _resolve(image_path_or_name, store)
    return _read(name, store)[0]


def _write(name: str, store: ProjectStore, qc: dict[str, Any], damaged: bool) -> Path:
    path = store.path(name, QC_FILE)
    if damaged and path.exists() and path == store.find(name, QC_FILE):
        kept = path.with_name(f"{path.name}.damaged-{datetime.now():%Y%m%d-%H%M%S}")
        path.replace(kept)
        log.warning("%s: damaged QC record kept at %s", name, kept.name)
    return store.save_json(name, QC_FILE, qc)


def save_qc(
    image_path: str | Path, task: str, record: dict[str, Any], *, store: ProjectStore | None = None
) -> Path:
    """Save one task's QC record of an image (other tasks' records are kept); the file."""
    check_task(task)
    u = record.get("uncertainty") if isinstance(record, dict) else None
    if not isinstance(u, (int, float)) or isinstance(u, bool):
        raise ValueError(f"a QC record needs a numeric 'uncertainty', got {record!r:.80}")
    name, store = _resolve(image_path, store)
    with _LOCK:
        qc, damaged = _read(name, store)
        qc["tasks"][task] = {**record, "updated": _now()}
        return _write(name, store, qc, damaged)


def mark_qc_verified(
    image_path: str | Path, task: str, store: ProjectStore | None = None
) -> Path:
    """Record that a human checked an image's ``task`` result; the file written.

    For "boxes" this is the box curation's "verified" status (the saved boxes are kept; an image
    without saved boxes raises ``ValueError``), for "sam" / "segment" an entry in ``qc.json``.
    """
    check_task(task)
    name, store = _resolve(image_path, store)
    if task == BOXES:
        from headless.boxes.curation import BoxCuration

        cur = BoxCuration(store)
        cur.mark_verified(name)
        return cur.path(name)
    with _LOCK:
        qc, damaged = _read(name, store)
        qc["verified"][task] = _now()
        return _write(name, store, qc, damaged)


def save_automatic_boxes(
    image_path: str | Path, boxes: Any, size: tuple[int, int], method: str,
    details: dict[str, Any], qc: dict[str, Any] | None = None,
) -> None:
    """A method's boxes for an image's project (never over the user's edits) with their QC
    record, in ``boxes.json`` ``details["qc"]`` and ``qc.json`` (``dinoseg boxes --project``
    and the batch job)."""
    from headless.boxes.curation import BoxCuration

    details = {**details, **({"qc": qc} if qc is not None else {})}
    BoxCuration.for_image(image_path).save_automatic(Path(image_path).name, boxes, size,
                                                     method, details=details)
    if qc is not None:
        save_qc(image_path, "boxes", qc)
