"""The ``slurm`` runner: a submitit job whose ``checkpoint()`` requeues it.

SLURM's USR2 before the time limit makes the training loop save a checkpoint at the next step;
submitit then requeues the job and the new job resumes from that checkpoint.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
from pathlib import Path
from typing import Any

from headless.jobs.runlog import write_status
from headless.jobs.runner_base import RunHandle, Runner, RunnerUnavailable


class SlurmJob:
    """What submitit pickles and runs on the cluster; ``checkpoint()`` makes it requeueable."""

    def __init__(self, run_dir: str, shard: int | None = None) -> None:
        self.run_dir = str(run_dir)
        self.shard = shard  # a batch run's shard: one SLURM array task each

    def __call__(self) -> str:
        import submitit

        from headless.jobs.worker import StopFlag, execute

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(overwrite=True)
        stop = StopFlag()
        # submitit routes USR2 to checkpoint-and-requeue at once; we first let the training
        # loop reach a step boundary and save, then hand the signal back to submitit
        previous = stop.install((signal.SIGUSR2, signal.SIGTERM))
        state = execute(self.run_dir, runner="slurm", stop=stop,
                        extra_status={"slurm_job_id": str(env.job_id)}, shard=self.shard)
        handler = previous.get(signal.SIGUSR2)
        if stop.signum == signal.SIGUSR2 and callable(handler):
            handler(signal.SIGUSR2, None)  # checkpoint() -> requeue -> exit
        return state

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmJob(self.run_dir, self.shard))


class SlurmRunner(Runner):
    """A SLURM job through submitit, requeued on time-out or pre-emption."""

    name = "slurm"

    def __init__(self, cluster: str | None = None) -> None:
        # cluster="local" runs submitit's local executor: the same pickling, signals and
        # checkpoint path without a cluster (tests)
        self.cluster = cluster

    def check(self, spec: Any) -> None:
        if importlib.util.find_spec("submitit") is None:
            raise RunnerUnavailable(
                "the slurm runner needs submitit, which is not installed: "
                "pip install submitit (or napari-dinoseg[cluster])"
            )
        if self.cluster is None and shutil.which("sbatch") is None:
            raise RunnerUnavailable(
                "SLURM is not available here: sbatch was not found on PATH. Run this from a "
                "cluster login node, or use --runner local"
            )

    def executor(self, run_dir: Path, spec: Any, array: bool = False) -> Any:
        import submitit

        cfg = spec.slurm
        executor = submitit.AutoExecutor(
            folder=str(run_dir / "slurm"), cluster=self.cluster,
            slurm_max_num_timeout=cfg.max_requeue,
        )
        params: dict[str, Any] = dict(
            name=f"dinoseg-{run_dir.name}", timeout_min=cfg.time_min, nodes=1,
            tasks_per_node=1 if array else max(1, cfg.gpus_per_node),
            cpus_per_task=cfg.cpus_per_task,
        )
        if executor.cluster == "slurm":
            gpus = min(1, cfg.gpus_per_node) if array else cfg.gpus_per_node
            params.update(gpus_per_node=gpus, slurm_signal_delay_s=120)
            for key in ("partition", "account", "qos", "constraint"):
                if getattr(cfg, key):
                    params[f"slurm_{key}"] = getattr(cfg, key)
            if cfg.mem_gb:
                params["mem_gb"] = cfg.mem_gb
        executor.update_parameters(**params)
        return executor

    def start(self, run_dir: Path, spec: Any) -> RunHandle:
        write_status(run_dir, state="queued", runner=self.name, cancel_requested=False)
        if getattr(spec, "slurm_array_size", 1) > 1:
            return self._start_array(run_dir, spec)
        job = self.executor(run_dir, spec).submit(SlurmJob(str(run_dir)))
        write_status(run_dir, slurm_job_id=str(job.job_id))
        return RunHandle(run_dir, self.name, job=job, info={"slurm_job_id": str(job.job_id)})

    def _start_array(self, run_dir: Path, spec: Any) -> RunHandle:
        """One array task per unfinished shard of a batch run (a resumed run skips the rest)."""
        from headless.batch.records import DONE_NAME, shard_dir

        shards = [i for i in range(spec.slurm_array_size)
                  if not (shard_dir(run_dir, i) / DONE_NAME).is_file()] or [0]
        for i in shards:  # the run's state is derived from these until the tasks start
            shard_dir(run_dir, i).mkdir(parents=True, exist_ok=True)
            write_status(shard_dir(run_dir, i), state="queued", runner=self.name,
                         cancel_requested=False)
        executor = self.executor(run_dir, spec, array=True)
        with executor.batch():
            jobs = [executor.submit(SlurmJob(str(run_dir), shard=i)) for i in shards]
        ids = [str(j.job_id) for j in jobs]
        write_status(run_dir, slurm_job_id=ids[0].split("_")[0], slurm_array=ids)
        from headless.jobs.runlog import RunLog

        # the tasks log in their shard folders: the run's own log says what the whole run is
        RunLog(run_dir).append("start", task=getattr(spec, "task", None),
                               images=len(getattr(spec, "images", [])), shards=spec.shards,
                               total_steps=len(getattr(spec, "images", [])),
                               slurm_array=ids)
        return RunHandle(run_dir, self.name, job=jobs[0],
                         info={"slurm_job_id": ids[0], "slurm_array": ids})
