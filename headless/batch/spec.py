"""The spec of a batch run: which command, on which images, with which settings, how split.

Stored as the run folder's ``config.yaml`` like a training job's, so ``dinoseg runs`` lists,
follows, cancels and resumes batch runs too. ``options`` holds the command's own settings (the
same names as its command-line options); the task checks them before anything starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from headless.jobs.spec import PATH, SlurmConfig, TorchrunConfig, _Strict, check_device

TASK_NAMES = ("boxes", "attention-maps", "sam", "features", "segment")


class BatchSpec(_Strict):
    """One command run over a whole image list, in shards."""

    job: Literal["batch"] = "batch"
    name: str | None = Field(None, description="short name, part of the run folder name")
    task: Literal["boxes", "attention-maps", "sam", "features", "segment"] = "boxes"
    images: list[str] = Field(default_factory=list, description="the run's images (sorted)",
                              json_schema_extra=PATH)
    out: str = Field("", description="the merged output (file or folder, as the command's --out)",
                     json_schema_extra=PATH)
    shards: int = Field(1, ge=1, description="how many shards (SLURM array tasks)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="the command's own settings")
    device: str = Field("auto", description="auto|cpu|cuda|cuda:N")
    batch_size: int = Field(8, ge=1, description="images per forward pass (same input shape)")
    num_workers: int = Field(2, ge=0, description="image-decoding processes per task")
    autocast: bool = Field(True, description="bf16 autocast on CUDA where the task allows it")
    cpu_threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all)")
    seed: int = 0
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    torchrun: TorchrunConfig = Field(default_factory=TorchrunConfig)

    _device = field_validator("device")(check_device)

    @property
    def slurm_array_size(self) -> int:
        """The SLURM runner submits one array task per shard."""
        return self.shards
