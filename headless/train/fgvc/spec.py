"""The ``fgvc`` job spec: fine-grained classification with a DINOv2 (or ViT-B/16) and IELT.

Shared sections (checkpoints, logs, SLURM, torchrun, crops, colour augmentation) come from
:mod:`headless.jobs.spec`; every path field carries the ``PATH`` / ``PATH_OR_KEYWORD`` marker so
the runners make it absolute. ``opt.type: auto`` and an empty ``opt.lr`` follow seed 002's table:
AdamW 1e-5 for DINO / DINOv2, SGD 2e-2 for the supervised ViT-B/16.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from headless.jobs.spec import (
    PATH,
    PATH_OR_KEYWORD,
    AugmentConfig,
    CheckpointConfig,
    CropConfig,
    LogConfig,
    OptConfig,
    SlurmConfig,
    TorchrunConfig,
    _Strict,
    check_device,
)

LAYOUTS = ("auto", "imagefolder", "cub", "flowers102", "dogs")


class FgvcDataConfig(_Strict):
    root: str = Field("", description="dataset folder (ImageFolder, CUB_200_2011, Flowers-102 "
                      "or Stanford Dogs as downloaded)", json_schema_extra=PATH)
    layout: Literal["auto", "imagefolder", "cub", "flowers102", "dogs"] = "auto"
    test_root: str | None = Field(None, description="imagefolder: the test ImageFolder (else "
                                  "root/test)", json_schema_extra=PATH)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0,
                                description="held out of train when the layout has no val")
    boxes: str | None = Field(None, description="curated boxes for box-aware crops",
                              json_schema_extra=PATH)
    image_size: int = Field(448, ge=8, description="input size (IELT: 448)")
    batch_size: int = Field(30, ge=1, description="images per optimiser step and process")
    sub_batch: int | None = Field(None, ge=1, description="images per forward; gradients "
                                  "accumulate over batch_size / sub_batch (seed 002's "
                                  "MAX_GRAD_ACCUM_SUB_BATCH); empty = the whole batch")
    triplets: bool = Field(True, description="batches of (anchor, positive, negative) "
                           "triplets when the triplet loss is on (seed 002)")
    num_workers: int = Field(4, ge=0)


class FgvcModelConfig(_Strict):
    backbone: str = Field("dinov2_vits14", description="a registry ViT or vit_b16")
    weights: str | None = Field("official", description="official | random | a file",
                                json_schema_extra=PATH_OR_KEYWORD)
    head: Literal["ielt", "linear"] = Field("ielt", description="linear = the plain baseline")
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)


class IeltConfig(_Strict):
    """IELT's parts; each can be switched off for an ablation."""

    vote_perhead: int = Field(24, ge=1, description="MHV: patches each head votes for")
    total_num: int = Field(126, ge=1, description="tokens selected over all layers")
    selection: Literal["vote", "random"] = Field("vote", description="random = no MHV")
    enhancement: Literal["fixed", "learnable", "none"] = "fixed"
    dilations: list[int] = Field([1, 2, 4], description="[1] = IELT; [1, 2, 4] = seed 002")
    select_rate: list[float] | None = Field(None, description="initial layer shares "
                                            "(default: equal)")
    dsm: bool = Field(True, description="dynamic selection after the warm-up")
    update_warm_epochs: float = Field(10.0, ge=0.0, description="DSM warm-up (epochs)")
    dsm_alpha: float = Field(1e-3, gt=0.0, le=1.0)
    cam: bool = Field(True, description="complementary assistant head")
    loss_alpha: float = Field(0.4, ge=0.0, le=1.0, description="CAM: weight of CE(complement)")
    clr_select: int = Field(24, ge=1, description="CLR tokens passed to the CAM key block")
    merge_tokens: int = Field(4, ge=0, description="seed 002's merger: extra tokens (0 = off)")
    clr_init: Literal["last_block", "random"] = Field(
        "last_block", description="CLR / key blocks: a copy of the last block, or fresh")

    @field_validator("dilations")
    @classmethod
    def _dil(cls, v: list[int]) -> list[int]:
        if not v or any(d < 1 for d in v):
            raise ValueError(f"needs one or more dilations >= 1, got {v}")
        return v


class LossConfig(_Strict):
    triplet_weight: float = Field(1.0, ge=0.0, description="batch-hard triplet (0 = off)")
    triplet_margin: float = Field(1.0, gt=0.0)


class FgvcOptConfig(OptConfig):
    type: Literal["auto", "sgd", "adam", "adamw"] = "auto"  # type: ignore[assignment]
    lr: float | None = Field(None, gt=0.0)  # type: ignore[assignment]
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_epochs: float = Field(1.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    clip_grad: float | None = Field(5.0, gt=0.0, description="max gradient norm (empty = off)")


def _crop() -> CropConfig:
    return CropConfig(scale=(0.35, 1.0))


class FgvcSpec(_Strict):
    """Issue 11 / seed 002: fine-grained classification with IELT on a ViT."""

    job: Literal["fgvc"] = "fgvc"
    name: str | None = None
    seed: int = 0
    deterministic: bool = True
    device: str = Field("auto", description="auto|cpu|cuda|cuda:N")
    cpu_threads: int | None = Field(None, ge=1)
    num_epochs: int = Field(50, ge=1)
    max_steps: int | None = Field(None, ge=1)
    eval_every: int = Field(1, ge=1)
    data: FgvcDataConfig = Field(default_factory=FgvcDataConfig)
    crop: CropConfig = Field(default_factory=_crop)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: FgvcModelConfig = Field(default_factory=FgvcModelConfig)
    ielt: IeltConfig = Field(default_factory=IeltConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    opt: FgvcOptConfig = Field(default_factory=FgvcOptConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    torchrun: TorchrunConfig = Field(default_factory=TorchrunConfig)

    _device = field_validator("device")(check_device)

    @model_validator(mode="after")
    def _consistent(self) -> FgvcSpec:
        if self.crop.type == "attention":
            raise ValueError("crop.type 'attention' is not available for fgvc: use "
                             "random_resized or localized")
        if self.crop.type == "localized" and not self.data.boxes:
            raise ValueError("crop.type 'localized' needs boxes: set data.boxes to a box file")
        sub = self.data.sub_batch
        if sub is not None and sub > self.data.batch_size:
            raise ValueError(f"data.sub_batch={sub} is larger than data.batch_size="
                             f"{self.data.batch_size}")
        if self.loss.triplet_weight > 0 and self.data.triplets and self.data.batch_size % 3:
            raise ValueError(f"data.batch_size={self.data.batch_size} is not divisible by 3: "
                             "triplet batches hold whole (anchor, positive, negative) triplets "
                             f"(use {max(3, self.data.batch_size // 3 * 3)})")
        if sub is not None and self.loss.triplet_weight > 0 and sub % 3:
            raise ValueError(f"data.sub_batch={sub} is not divisible by 3: with the triplet "
                             "loss on (loss.triplet_weight > 0) every sub-batch must hold whole "
                             f"triplets (use {max(3, sub // 3 * 3)}, or set "
                             "loss.triplet_weight: 0)")
        return self


def resolved_opt(spec: FgvcSpec) -> OptConfig:
    """``opt`` with ``auto`` resolved (seed 002: AdamW 1e-5 for DINOv2, SGD 2e-2 for ViT-B/16)."""
    from headless.train.fgvc.backbone import SUPERVISED

    o = spec.opt
    supervised = spec.model.backbone in SUPERVISED
    kind = o.type if o.type != "auto" else ("sgd" if supervised else "adamw")
    lr = o.lr if o.lr is not None else (2e-2 if kind == "sgd" else 1e-5)
    fields = o.model_dump(exclude={"type", "lr", "clip_grad"})
    return OptConfig(type=kind, lr=lr, **fields)
