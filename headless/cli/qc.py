"""``dinoseg qc``: a folder's automatic results, the ones most in need of a human first.

Twin of the boxes dock's queue ("worst first", status filter, "next to check"): both use
:func:`headless.qc.queue.build_queue`. ``--verify NAME --task T`` records that a human checked
an image (for boxes: the curation's "verified" status, as the dock's "Mark verified").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from headless.cli import CommandError
from headless.cli._types import check_out_file, positive_int

TASK_CHOICES = ("boxes", "sam", "segment")
STATUS_CHOICES = ("none", "automatic", "edited", "verified")
REASONS_WIDTH = 60


def register(sub: Any) -> None:
    p = sub.add_parser(
        "qc",
        help="the QC queue: a folder's automatic results ordered by uncertainty -> table / CSV",
        description=(
            "List a folder's images with the uncertainty of their automatic results (boxes, SAM "
            "masks, scribble segmentations), the ones most in need of a human first. Verified "
            "results are left out unless --all. Images without boxes QC are listed last."
        ),
    )
    p.add_argument("folder", type=Path, help="the image folder (its project is FOLDER/.dinoseg)")
    p.add_argument("--task", action="append", default=None, choices=TASK_CHOICES,
                   help="only this task (repeatable); default all")
    p.add_argument("--status", action="append", default=None, choices=STATUS_CHOICES,
                   help="only rows with this status (repeatable); default all but verified")
    p.add_argument("--sort", default="uncertainty", choices=("uncertainty", "name"),
                   help="uncertainty = worst first (default), name = by image name")
    p.add_argument("--out", type=Path, default=None, metavar="CSV",
                   help="write every row to this CSV file (image,task,uncertainty,status,"
                        "reasons,signals)")
    p.add_argument("--verify", default=None, metavar="NAME",
                   help="first mark image NAME as checked by a human for --task (one task)")
    p.add_argument("--all", action="store_true", help="include verified results")
    p.add_argument("--top", type=positive_int, default=20, metavar="N",
                   help="rows printed (default 20; the CSV holds all)")
    p.set_defaults(func=_run_qc)


def _verify(folder: Path, name: str, tasks: list[str] | None) -> str:
    from headless.images import list_images
    from headless.qc.store import mark_qc_verified
    from headless.store import ProjectStore

    if not tasks or len(tasks) != 1:
        raise CommandError("--verify needs exactly one --task (boxes, sam or segment)")
    images = {p.name: p for p in list_images(folder).images}
    path = images.get(Path(name).name)
    if path is None:
        raise CommandError(f"{name}: not an image of {folder}")
    store = ProjectStore.for_folder(folder)
    try:
        mark_qc_verified(path, tasks[0], store=store)
    except ValueError as exc:
        raise CommandError(f"cannot verify {name} ({tasks[0]}): {exc}") from None
    return f"{path.name}: {tasks[0]} verified"


def format_table(rows: list[Any], top: int) -> str:
    """The first ``top`` rows as aligned columns: image, task, uncertainty, status, reasons."""
    header = ("image", "task", "uncert.", "status", "reasons")
    cells = [header]
    for r in rows[:top]:
        reasons = "; ".join(r.reasons)
        if len(reasons) > REASONS_WIDTH:
            reasons = reasons[: REASONS_WIDTH - 1] + "…"
        u = "-" if r.uncertainty is None else f"{r.uncertainty:.2f}"
        cells.append((r.image, r.task, u, r.status, reasons))
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    lines = ["  ".join([*(c[i].ljust(widths[i]) for i in range(len(widths))), c[-1]]).rstrip()
             for c in cells]
    if len(rows) > top:
        lines.append(f"... {len(rows) - top} more")
    return "\n".join(lines)


def _run_qc(args: argparse.Namespace) -> int:
    from headless.qc.queue import build_queue, write_queue_csv

    if not args.folder.is_dir():
        raise CommandError(f"{args.folder}: not a folder")
    check_out_file(args.out)
    if args.verify is not None:
        print(_verify(args.folder, args.verify, args.task))
    rows = build_queue(args.folder, tasks=args.task, statuses=args.status, sort=args.sort,
                       include_verified=args.all)
    if rows:
        print(format_table(rows, args.top))
    else:
        print(f"nothing to check in {args.folder}", file=sys.stderr)
    if args.out is not None:
        write_queue_csv(rows, args.out)
        print(f"{len(rows)} row(s) -> {args.out}")
    return 0
