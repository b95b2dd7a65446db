"""``dinoseg batch-merge RUN``: write a batch run's merged outputs from its shard records.

Every batch run merges by itself when its last shard finishes; this is for a run whose merge
was interrupted, or ``--partial`` to look at what is finished while it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from headless.cli import CommandError


def register(sub: Any) -> None:
    p = sub.add_parser("batch-merge", help="merge a batch run's shards into its outputs")
    p.add_argument("run", help="run folder or its name (dinoseg runs list)")
    p.add_argument("--runs-root", type=Path, default=None)
    p.add_argument("--partial", action="store_true",
                   help="merge the images finished so far (the rest are left out)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from headless.batch.merge import MergeError, merge_run
    from headless.jobs.runs import CONFIG_NAME, RunError, find_run
    from headless.jobs.spec import load_spec

    try:
        run_dir = find_run(args.run, args.runs_root)
    except RunError as exc:
        raise CommandError(str(exc)) from None
    spec = load_spec(run_dir / CONFIG_NAME)
    if spec.job != "batch":
        raise CommandError(f"{run_dir.name} is a {spec.job} run, not a batch run")
    try:
        result = merge_run(run_dir, spec, partial=args.partial)
    except MergeError as exc:
        raise CommandError(str(exc)) from None
    print(f"merged {result.n_done} of {result.n_images} image(s) ({len(result.failures)} "
          f"failed) -> " + ", ".join(map(str, result.outputs)))
    return 0
