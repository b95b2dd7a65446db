"""``--runner`` for the inference commands: the same command as a sharded batch job.

``dinoseg boxes|sam|features|segment|attention-maps ... --runner local|torchrun|slurm
[--shards N]`` checks the options as the interactive command does, then builds a
:class:`headless.batch.spec.BatchSpec` and starts it through :func:`headless.jobs.runners.launch`.
Without ``--detach`` it follows the run and prints the merge; ``dinoseg runs`` lists, cancels
and resumes it like a training run, and ``dinoseg batch-merge RUN`` merges by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from headless.cli import CommandError
from headless.cli._types import positive_int


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("as a batch job (whole datasets: sharded, resumable, merged)")
    g.add_argument("--runner", choices=("local", "torchrun", "slurm"), default=None,
                   help="run as a job: local (one background process), torchrun (one process "
                        "per GPU of this node), slurm (a submitit job array, one task per "
                        "shard); default: in this process, as before")
    g.add_argument("--shards", type=positive_int, default=None,
                   help="split the sorted image list into N shards (default: 1; torchrun: one "
                        "per process)")
    g.add_argument("--nproc", type=positive_int, default=None,
                   help="torchrun: processes on this node (default: one per GPU; on CPU 1)")
    g.add_argument("--batch-size", dest="job_batch_size", type=positive_int, default=8,
                   help="images per forward pass in a job (same input shape), default 8")
    g.add_argument("--num-workers", type=int, default=2,
                   help="image-decoding processes per job task, default 2")
    g.add_argument("--runs-root", type=Path, default=None,
                   help="where the run folder goes (default: DINOSEG_RUNS or ~/.dinoseg/runs)")
    g.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="SLURM settings, e.g. --slurm partition=gpu --slurm time_min=120")
    g.add_argument("--detach", action="store_true",
                   help="start the job and return (follow it with dinoseg runs show RUN)")


def wants_batch(args: argparse.Namespace) -> bool:
    return getattr(args, "runner", None) is not None


def file_or_keyword(value: Any) -> Any:
    """A file option as an absolute path, a keyword (official, random, None) as it is: a batch
    worker runs in its run folder, where a relative path means something else."""
    if value is None or str(value) in ("official", "random", "imagenet"):
        return value if value is None else str(value)
    p = Path(str(value)).expanduser()
    return str(p.resolve()) if p.exists() else str(value)


def launch_batch(
    args: argparse.Namespace, task: str, images: list[Path], out: Path,
    options: dict[str, Any], device: str = "auto", failed_exit: int = 0,
) -> int:
    """Check, start and (unless ``--detach``) follow a batch run; the CLI exit code
    (``failed_exit`` when some images failed, as the interactive command returns then)."""
    from headless.batch.shards import sorted_images
    from headless.jobs.runners import RunnerUnavailable, get_runner, launch
    from headless.jobs.spec import SpecError, build_spec

    images = sorted_images(images)
    overrides = [f"slurm.{kv}" for kv in args.slurm]
    if args.nproc is not None:
        overrides.append(f"torchrun.nproc_per_node={args.nproc}")
    config = {"job": "batch", "name": task, "task": task, "images": [str(p) for p in images],
              "out": str(out), "shards": args.shards or 1, "options": options, "device": device,
              "batch_size": args.job_batch_size, "num_workers": args.num_workers}
    try:
        spec = build_spec(config, overrides)
        if args.shards is None and args.runner == "torchrun":  # one shard per process
            spec.shards = max(1, get_runner("torchrun").nproc(spec))
        n_shards = spec.shards
        if n_shards > len(images):
            raise CommandError(f"--shards {n_shards} for {len(images)} image(s): at most one "
                               "shard per image")
        handle = launch(spec, args.runner, runs_root=args.runs_root)
    except (SpecError, RunnerUnavailable) as exc:
        raise CommandError(str(exc)) from None
    print(f"batch run {handle.run_dir.name}: {len(images)} image(s) in {n_shards} shard(s), "
          f"runner {args.runner} -> {handle.run_dir}", file=sys.stderr)
    for w in handle.info.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if args.detach:
        print(f"follow it with: dinoseg runs show {handle.run_dir.name}")
        return 0
    return follow_and_report(handle, len(images), n_shards, quiet=getattr(args, "quiet", False),
                             failed_exit=failed_exit)


def follow_and_report(handle: Any, n_images: int, n_shards: int, quiet: bool = False,
                      failed_exit: int = 0) -> int:
    """Follow a batch run to its end, then print what the merge wrote."""
    from headless.batch.follow import follow_batch
    from headless.batch.merge import MANIFEST_NAME
    from headless.progress import run_with_tqdm
    from headless.store import read_json

    try:
        state = run_with_tqdm(follow_batch(handle.run_dir, handle, n_images, n_shards),
                              desc="batch", disable=quiet)
    except KeyboardInterrupt:
        print(f"stopped following; the run goes on: dinoseg runs show {handle.run_dir.name}",
              file=sys.stderr)
        return 130
    manifest = handle.run_dir / MANIFEST_NAME
    if state != "completed" or not manifest.is_file():
        from headless.jobs.runlog import read_status

        msg = read_status(handle.run_dir).get("message") or ""
        print(f"batch run {handle.run_dir.name} ended {state}" + (f": {msg}" if msg else "")
              + f" (resume: dinoseg runs resume {handle.run_dir.name})", file=sys.stderr)
        return 1
    m = read_json(manifest)
    print(f"merged {m['merged']} image(s) ({m['failed']} failed) -> "
          + ", ".join(m["outputs"]))
    for name, why in list(m.get("failures", {}).items())[:20]:
        print(f"failed: {name}: {why}", file=sys.stderr)
    if m["failed"] and not m["merged"] - m["failed"]:
        return 2  # nothing could be done
    return failed_exit if m["failed"] else 0
