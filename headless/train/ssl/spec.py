"""The ``dino`` job's spec: pretext folder, multi-crop, student / teacher, DINO's optimisation.

Fields left empty (``None``) take the recipe of the architecture: for ViTs the reference's
(AdamW, lr 5e-4, weight decay 0.04 -> 0.4, global / local scales 0.4-1 / 0.05-0.4); for
ResNet-50 the seed's (SGD, lr 0.03, weight decay 1e-4 constant, scales 0.14-1 / 0.05-0.14).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from headless.jobs.spec import (
    PATH,
    PATH_OR_KEYWORD,
    CheckpointConfig,
    LogConfig,
    SlurmConfig,
    TorchrunConfig,
    _Strict,
    check_device,
)

ARCHS = ("vit_tiny", "vit_small", "vit_base", "resnet50", "test_vit")


class DinoData(_Strict):
    pretext: str = Field("", description="folder of unlabelled images (searched recursively)",
                         json_schema_extra=PATH)
    batch_size: int = Field(64, ge=1, description="images per step and per process")
    num_workers: int = Field(4, ge=0, description="data-loading processes")
    knn_root: str | None = Field(
        None, description="optional labelled folder with train/ and val/: k-NN accuracy of the "
                          "teacher after each evaluation epoch", json_schema_extra=PATH)


class DinoCrops(_Strict):
    global_size: int = Field(224, ge=16)
    local_size: int = Field(96, ge=8)
    n_local: int = Field(8, ge=0, description="local crops per image")
    global_scale: tuple[float, float] | None = Field(None, description="default by arch")
    local_scale: tuple[float, float] | None = Field(None, description="default by arch")

    @field_validator("global_scale", "local_scale")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0 < v[0] <= v[1] <= 1):
            raise ValueError(f"needs 0 < low <= high <= 1, got {list(v)}")
        return v


class DinoModel(_Strict):
    arch: Literal["vit_tiny", "vit_small", "vit_base", "resnet50", "test_vit"] = "vit_small"
    patch_size: Literal[8, 16] = 16
    out_dim: int = Field(65536, ge=2, description="prototypes of the DINO head")
    head_hidden_dim: int = Field(2048, ge=1, description="hidden width of the head's MLP")
    head_bottleneck_dim: int = Field(256, ge=1, description="bottleneck before the last layer")
    norm_last_layer: bool = Field(True, description="freeze the norm of the head's last layer")
    use_bn_in_head: bool = False
    drop_path_rate: float = Field(0.1, ge=0.0, lt=1.0, description="student ViT only")
    init_weights: str | None = Field(None, description="start the backbone from a file",
                                     json_schema_extra=PATH_OR_KEYWORD)


class DinoOpt(_Strict):
    optimizer: Literal["adamw", "sgd"] | None = None
    lr: float | None = Field(None, gt=0.0, description="at batch 256; scaled by batch / 256")
    min_lr: float = Field(1e-6, ge=0.0)
    warmup_epochs: int = Field(10, ge=0)
    weight_decay: float | None = Field(None, ge=0.0)
    weight_decay_end: float | None = Field(None, ge=0.0)
    clip_grad: float = Field(3.0, ge=0.0, description="per-parameter norm clip; 0 = off")
    freeze_last_layer: int = Field(1, ge=0, description="epochs with the last layer frozen")
    momentum_teacher: float = Field(0.996, ge=0.0, le=1.0)
    warmup_teacher_temp: float = Field(0.04, gt=0.0)
    teacher_temp: float = Field(0.07, gt=0.0)
    warmup_teacher_temp_epochs: int = Field(30, ge=0)
    student_temp: float = Field(0.1, gt=0.0)
    center_momentum: float = Field(0.9, ge=0.0, lt=1.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="GPU autocast (auto = bf16 where supported, else fp16 + scaler)")


class DinoSpec(_Strict):
    """DINO self-supervised pre-training of a ViT or ResNet-50 on a folder of images."""

    job: Literal["dino"] = "dino"
    name: str | None = None
    seed: int = 0
    deterministic: bool = True
    device: str = Field("auto", description="auto|cpu|cuda|cuda:N")
    cpu_threads: int | None = Field(None, ge=1)
    num_epochs: int = Field(100, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop early (schedules keep epochs)")
    eval_every: int = Field(10, ge=1, description="k-NN monitor every N epochs (with knn_root)")
    data: DinoData = Field(default_factory=DinoData)
    crops: DinoCrops = Field(default_factory=DinoCrops)
    model: DinoModel = Field(default_factory=DinoModel)
    opt: DinoOpt = Field(default_factory=DinoOpt)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    torchrun: TorchrunConfig = Field(default_factory=TorchrunConfig)

    _device = field_validator("device")(check_device)

    def recipe(self) -> dict[str, object]:
        """The optimisation and crop settings with the architecture's defaults filled in."""
        resnet = self.model.arch == "resnet50"
        o, c = self.opt, self.crops
        return {
            "optimizer": o.optimizer or ("sgd" if resnet else "adamw"),
            "lr": o.lr if o.lr is not None else (0.03 if resnet else 0.0005),
            "weight_decay": o.weight_decay if o.weight_decay is not None
            else (1e-4 if resnet else 0.04),
            "weight_decay_end": o.weight_decay_end if o.weight_decay_end is not None
            else (1e-4 if resnet else 0.4),
            "global_scale": tuple(c.global_scale or ((0.14, 1.0) if resnet else (0.4, 1.0))),
            "local_scale": tuple(c.local_scale or ((0.05, 0.14) if resnet else (0.05, 0.4))),
        }
