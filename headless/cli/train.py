"""``dinoseg train SPEC.yaml``: start a training run (the Train panel's twin).

The spec is the job's defaults, updated by SPEC.yaml, updated by ``--set key=value``
overrides; it is checked (fields, data, boxes, weights, runner) before anything starts, saved
resolved in a new run folder, and handed to a runner. ``--wait`` follows the run's log.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="start a training run from a job spec (YAML) and key=value overrides",
        description="Start a training run. Without --wait the run continues in the background; "
        "follow it with `dinoseg runs show RUN` or napari's Train panel.",
    )
    p.add_argument("spec", nargs="?", help="job spec YAML (defaults when omitted)")
    p.add_argument("--runner", choices=["local", "slurm", "torchrun"], default="local",
                   help="where to run: a local process (default), SLURM via submitit, or "
                        "torchrun (one process per GPU of this node)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend",
                   default=[],
                   help="override spec fields, e.g. --set opt.lr=0.01 data.batch_size=64")
    p.add_argument("--runs-root", default=None,
                   help="folder for run folders (default $DINOSEG_RUNS or ~/.dinoseg/runs)")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends")
    p.add_argument("--dry-run", action="store_true",
                   help="check the spec, data and runner, print the resolved spec, start nothing")
    p.add_argument("--print-defaults", action="store_true",
                   help="print the default spec as YAML and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from headless.jobs import get_job
    from headless.jobs.runners import get_runner, launch, resolve_spec_paths
    from headless.jobs.spec import (
        build_spec,
        default_spec,
        load_spec,
        parse_override,
        spec_to_yaml,
        to_yaml,
    )

    if args.print_defaults:  # the defaults of the job asked for with --set job=NAME
        job = next((value for key, value in map(parse_override, args.overrides or [])
                    if key == ["job"]), "classifier")
        print(to_yaml(default_spec(str(job))), end="")
        return 0
    spec = load_spec(args.spec, args.overrides) if args.spec else build_spec({}, args.overrides)
    if args.dry_run:
        spec = resolve_spec_paths(spec)
        get_runner(args.runner).check(spec)
        summary = get_job(spec.job).preflight(spec) or {}
        print(spec_to_yaml(spec), end="")
        for key, value in summary.items():
            if key != "warnings":
                print(f"# {key}: {value}")
        for warning in summary.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    handle = launch(spec, runner=args.runner, runs_root=args.runs_root)
    for warning in handle.info.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    where = f"pid {handle.process.pid}" if handle.process is not None else \
        f"SLURM job {handle.info.get('slurm_job_id')}"
    print(f"started run {handle.run_dir.name} ({args.runner}, {where})")
    print(f"run folder: {handle.run_dir}")
    if not args.wait:
        print(f"follow it with: dinoseg runs show {handle.run_dir.name}")
        return 0
    return wait_and_report(handle)


def wait_and_report(handle: Any) -> int:
    """Follow a run with a progress bar, then print its final metrics; 0 when it completed."""
    from headless.jobs.runners import follow
    from headless.jobs.runs import read_metrics
    from headless.progress import run_with_tqdm

    try:
        state = run_with_tqdm(follow(handle.run_dir, handle), desc=handle.run_dir.name)
    except KeyboardInterrupt:
        print(f"\nstopped following; the run goes on. Cancel it with: dinoseg runs cancel "
              f"{handle.run_dir.name}", file=sys.stderr)
        return 130
    metrics = read_metrics(handle.run_dir)
    print(f"run {handle.run_dir.name}: {state}")
    if metrics:
        for key in ("acc1", "acc5", "loss", "ema_acc1", "ema_acc5"):
            if metrics.get(key) is not None:
                print(f"  {key}: {metrics[key]:.4f}")
    if state != "completed":
        from headless.jobs.runs import show_run

        errors = show_run(handle.run_dir)["errors"]
        if errors:
            print(f"  error: {errors[-1]}", file=sys.stderr)
        print(f"  see {handle.run_dir / 'worker.log'}", file=sys.stderr)
    return 0 if state == "completed" else 1
