"""``dinoseg runs list|show|cancel|resume``: training runs from a shell."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("runs", help="list, show, cancel or resume training runs")
    p.add_argument("--runs-root", default=None,
                   help="folder of run folders (default $DINOSEG_RUNS or ~/.dinoseg/runs)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="all runs, oldest first")
    show = actions.add_parser("show", help="status, progress and metrics of a run")
    show.add_argument("run", help="run folder, its name, a unique prefix, or 'last'")
    show.add_argument("--json", action="store_true", help="print everything as JSON")
    cancel = actions.add_parser("cancel", help="stop a run (it checkpoints first)")
    cancel.add_argument("run")
    cancel.add_argument("--force", action="store_true",
                        help="kill at once (no checkpoint; resumes from the previous one)")
    resume = actions.add_parser("resume", help="continue a stopped or killed run")
    resume.add_argument("run")
    resume.add_argument("--runner", choices=["local", "slurm", "torchrun"], default=None,
                        help="default: the runner it last ran with")
    resume.add_argument("--wait", action="store_true", help="follow the run until it ends")
    p.set_defaults(func=_run)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _run(args: argparse.Namespace) -> int:
    from headless.jobs import runs

    root = args.runs_root
    if args.action == "list":
        infos = runs.list_runs(root)
        if not infos:
            print(f"no runs in {runs.runs_root(root)}")
            return 0
        print(f"{'RUN':<44} {'STATE':<11} {'RUNNER':<9} {'STEP':>11} {'ACC@1':>8}")
        for info in infos:
            print(info.line())
        return 0
    if args.action == "show":
        data = runs.show_run(args.run, root)
        if args.json:
            print(json.dumps(data, indent=2, default=str))
            return 0
        status = data["status"]
        print(f"run:      {data['run']}")
        print(f"folder:   {data['path']}")
        print(f"state:    {data['state']}"
              + (f" ({status['message']})" if status.get("message") else ""))
        print(f"runner:   {status.get('runner', '-')}"
              + (f", pid {status['pid']}" if status.get("pid") else "")
              + (f", SLURM job {status['slurm_job_id']}" if status.get("slurm_job_id") else ""))
        if _batch_line(data["path"]):
            return 0
        total = data["total_steps"]
        print(f"step:     {data['step']}" + (f" / {total}" if total else ""))
        if data["last_train"]:
            t = data["last_train"]
            print(f"train:    loss {_fmt(t.get('loss'))}, acc@1 {_fmt(t.get('acc1'))}, "
                  f"lr {t.get('lr', 0):.3g}")
        if data["last_eval"]:
            e = data["last_eval"]
            print(f"val:      acc@1 {_fmt(e.get('acc1'))}, acc@5 {_fmt(e.get('acc5'))}, "
                  f"loss {_fmt(e.get('loss'))} (step {e.get('step')})")
        if data["metrics"]:
            keys = ("acc1", "acc5", "loss", "ema_acc1", "ema_acc5")
            shown = ", ".join(f"{k} {_fmt(data['metrics'][k])}" for k in keys
                              if data["metrics"].get(k) is not None)
            print(f"final:    {shown}")
        if data["checkpoint"]:
            print(f"resume:   dinoseg runs resume {data['run']}  (from {data['checkpoint']})")
        for err in data["errors"][-3:]:
            print(f"error:    {err}")
        return 0
    if args.action == "cancel":
        print(runs.cancel_run(args.run, root, force=args.force))
        return 0
    from headless.cli.train import wait_and_report
    from headless.jobs.runners import resume

    handle = resume(args.run, runner=args.runner, runs_root=root)
    print(f"resumed run {handle.run_dir.name} ({handle.runner})")
    if not args.wait:
        return 0
    spec = _batch_spec(handle.run_dir)
    if spec is not None:
        from headless.cli._batch import follow_and_report

        return follow_and_report(handle, len(spec.images), spec.shards, quiet=True)
    return wait_and_report(handle)


def _batch_spec(run_dir: Any) -> Any:
    """The spec of a batch run (None for a training run)."""
    from pathlib import Path

    from headless.jobs.runs import CONFIG_NAME
    from headless.jobs.spec import SpecError, load_spec

    try:
        spec = load_spec(Path(run_dir) / CONFIG_NAME)
    except SpecError:
        return None
    return spec if spec.job == "batch" else None


def _batch_line(run_dir: Any) -> bool:
    """``runs show`` of a batch run: images done, images/s, ETA, and the merged outputs."""
    from pathlib import Path

    from headless.batch.follow import batch_progress
    from headless.batch.merge import MANIFEST_NAME
    from headless.store import read_json

    spec = _batch_spec(run_dir)
    if spec is None:
        return False
    prog = batch_progress(run_dir, len(spec.images), spec.shards)
    print(f"batch:    {spec.task}, {prog.line()}")
    manifest = Path(run_dir) / MANIFEST_NAME
    if manifest.is_file():
        m = read_json(manifest)
        print(f"merged:   {m['merged']} image(s), {m['failed']} failed -> "
              + ", ".join(m["outputs"]))
    return True
