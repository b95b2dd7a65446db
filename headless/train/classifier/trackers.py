"""TensorBoard and W&B logging of a run, each only when asked for and installed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from headless.jobs.runlog import RunLog
from headless.jobs.spec import ClassifierSpec


class Trackers:
    """TensorBoard and W&B, each only when asked for and installed (a message otherwise)."""

    def __init__(self, spec: ClassifierSpec, run_dir: Path, log: RunLog, enabled: bool) -> None:
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        if spec.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.append("message", message="log.tensorboard: tensorboard is not installed "
                                              "(pip install tensorboard); not logging to it")
        if spec.log.wandb:
            try:
                import wandb

                self.wandb = wandb.init(
                    project=spec.log.wandb_project, name=run_dir.name, dir=str(run_dir),
                    config=spec.model_dump(mode="json"), id=_wandb_id(run_dir), resume="allow",
                )
            except ImportError:
                log.append("message", message="log.wandb: wandb is not installed "
                                              "(pip install wandb); not logging to it")
            except Exception as exc:  # no login / no network must not stop training
                log.append("message", message=f"log.wandb: {type(exc).__name__}: {exc}")

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        clean = {k: float(v) for k, v in values.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{prefix}/{k}": v for k, v in clean.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
