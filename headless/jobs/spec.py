"""Job specs: validated models stored as YAML, built from defaults + a YAML file + overrides.

As in DINOv2's configs, a run's configuration is the defaults, updated by an experiment YAML,
updated by ``key=value`` overrides from the command line (``opt.lr=0.01``,
``crop.scale=[0.2,1.0]``); the resolved configuration is saved as ``config.yaml`` in the run
folder, so a run folder alone says exactly what ran. Every model forbids unknown fields: a typo
(``opt.lrr``) is an error that names the field and suggests the closest real one.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class SpecError(ValueError):
    """A job spec that cannot be used; the message names the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: Field markers for :func:`headless.jobs.runners.resolve_spec_paths`: a relative path is made
#: absolute before the worker runs elsewhere; ``PATH_OR_KEYWORD`` only when such a file exists
#: (else it is a keyword: "official", "imagenet", "random"). Every job's spec uses them, so the
#: runners need no knowledge of any job's fields.
PATH: dict[str, Any] = {"path": "always"}
PATH_OR_KEYWORD: dict[str, Any] = {"path": "if_exists"}


def check_device(cls: type, v: str) -> str:
    """The ``device`` field of every job spec: auto, cpu, cuda, cuda:N or mps."""
    v = v.strip().lower()
    if v not in ("auto", "cpu", "cuda", "mps") and not (v.startswith("cuda:") and v[5:].isdigit()):
        raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
    return v


class DataConfig(_Strict):
    """Where the images and boxes are, and how they are batched."""

    root: str = Field("", description="ImageFolder: one sub-folder per class",
                      json_schema_extra=PATH)
    val_root: str | None = Field(
        None, description="validation ImageFolder; when empty, root/train + root/val or a split",
        json_schema_extra=PATH,
    )
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="held-out share when splitting")
    boxes: str | None = Field(
        None, description="exported boxes (COCO .json, VOC .xml / folder, .csv, or JSON of Boxes)",
        json_schema_extra=PATH,
    )
    image_size: int = Field(224, ge=8, description="training crop size (pixels)")
    batch_size: int = Field(32, ge=1, description="images per step and per process")
    num_workers: int = Field(4, ge=0, description="data-loading processes")


class CropConfig(_Strict):
    """Which random crop feeds the network (seed 000)."""

    type: Literal["random_resized", "localized", "attention"] = "random_resized"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    thr: float = Field(1.0, ge=0.0, le=1.0, description="localized: share of the box kept")
    temperature: float = Field(1.0, gt=0.0, description="attention: softmax temperature T")
    min_max: bool = Field(True, description="attention: min-max normalise before the softmax")
    sigma: float = Field(1.0, ge=0.0, description="attention: Gaussian smoothing (grid cells)")
    attention_backbone: str = Field("dinov2_vits14", description="attention: ViT for the maps")
    attention_weights: str = Field("official", description="attention: official|random|file",
                                   json_schema_extra=PATH_OR_KEYWORD)
    attention_size: int = Field(224, ge=14, description="attention: ViT input (longer side)")

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1]):
            raise ValueError(f"needs 0 < low <= high, got {list(v)}")
        return v


class AugmentConfig(_Strict):
    """Colour-only augmentations: the object stays where the crop put it."""

    enabled: bool = True
    p: float = Field(0.5, ge=0.0, le=1.0, description="probability of one colour operation")
    augmix: bool = False
    hflip: bool = True


class ModelConfig(_Strict):
    """Backbone and head (seed 000's ``model`` section)."""

    type: str = Field("resnet50", description="resnet50|resnet18|test_resnet_tiny|<DINOv2 ViT>")
    weights: str | None = Field(
        None, description="None/'random', 'imagenet' (resnet), 'official' (ViT) or a file",
        json_schema_extra=PATH_OR_KEYWORD,
    )
    ema_step: int = Field(0, ge=0, description="update the EMA every k steps; 0 = no EMA")
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0)
    freeze_backbone: bool = False
    train_cls: bool = Field(False, description="ViT: train only the CLS token (and the head)")
    resumed_model: str | None = Field(None, description="initial weights from a saved model",
                                      json_schema_extra=PATH)


class OptConfig(_Strict):
    """Optimiser and learning-rate schedule (seed 000's ``opt`` section)."""

    type: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0)
    target_lr: float | None = Field(None, ge=0.0, description="lr reached at the end")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0.0)
    scheduler: Literal["cosine", "step", "constant"] = "cosine"
    step_size: int = Field(30, ge=1, description="step schedule: epochs between decays")
    gamma: float | None = Field(None, gt=0.0, description="step decay; derived from target_lr")
    warmup_epochs: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)


class CheckpointConfig(_Strict):
    every_steps: int = Field(200, ge=1, description="save a resumable checkpoint every N steps")
    keep: int = Field(1, ge=1, description="how many periodic checkpoints to keep")


class LogConfig(_Strict):
    interval: int = Field(10, ge=1, description="log training metrics every N steps")
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "napari-dinoseg"


class SlurmConfig(_Strict):
    """submitit / SLURM parameters for ``--runner slurm``."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int = Field(240, ge=1)
    gpus_per_node: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, ge=1)
    mem_gb: int | None = Field(None, ge=1)
    max_requeue: int = Field(3, ge=0, description="times a timed-out job is requeued")


class TorchrunConfig(_Strict):
    nproc_per_node: int | None = Field(None, ge=1, description="processes; default: all GPUs")


class ClassifierSpec(_Strict):
    """Seed 000's classifier job: an image classifier trained with box-aware crops."""

    job: Literal["classifier"] = "classifier"
    name: str | None = Field(None, description="short name, part of the run folder name")
    seed: int = 0
    deterministic: bool = True
    device: str = Field("auto", description="auto|cpu|cuda|cuda:N")
    cpu_threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all)")
    num_epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    eval_every: int = Field(1, ge=1, description="evaluate every N epochs (and at the end)")
    data: DataConfig = Field(default_factory=DataConfig)
    crop: CropConfig = Field(default_factory=CropConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    opt: OptConfig = Field(default_factory=OptConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    torchrun: TorchrunConfig = Field(default_factory=TorchrunConfig)

    _device = field_validator("device")(check_device)

    @model_validator(mode="after")
    def _consistent(self) -> ClassifierSpec:
        if self.crop.type == "localized" and not self.data.boxes:
            raise ValueError("crop.type 'localized' needs boxes: set data.boxes to a box file")
        if self.model.train_cls and self.model.type.startswith(("resnet", "test_resnet")):
            raise ValueError("model.train_cls needs a ViT backbone (a ResNet has no CLS token)")
        return self


#: job name -> spec model, or ``"module:Class"`` for a job whose spec lives with its code (a
#: training package importing ``headless.jobs.spec`` for the shared sections); imported on use.
SPEC_TYPES: dict[str, type[BaseModel] | str] = {"classifier": ClassifierSpec,
                                                "fgvc": "headless.train.fgvc.spec:FgvcSpec",
                                                "dino": "headless.train.ssl.spec:DinoSpec",
                                                "batch": "headless.batch.spec:BatchSpec"}

JobSpec = ClassifierSpec


# ----------------------------------------------------------------------------------------------
# building specs


def default_spec(job: str = "classifier") -> dict[str, Any]:
    """The defaults of a job as a plain dictionary (``dinoseg train --print-defaults``)."""
    return _model_for(job)().model_dump(mode="json")


def _model_for(job: str) -> type[BaseModel]:
    try:
        model = SPEC_TYPES[job]
    except KeyError:
        raise SpecError(
            f"job: unknown job type {job!r}; known: {', '.join(sorted(SPEC_TYPES))}"
        ) from None
    if isinstance(model, str):
        import importlib

        module, name = model.split(":")
        model = getattr(importlib.import_module(module), name)
    return model


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"opt.lr=0.01"`` -> (["opt", "lr"], 0.01); the value is read as YAML (lists, null...)."""
    if "=" not in text:
        raise SpecError(f"override {text!r}: expected key=value (for example opt.lr=0.01)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise SpecError(f"override {text!r}: empty field name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise SpecError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """A copy of ``config`` with each ``key=value`` override set (nested keys with dots)."""
    import copy

    out = copy.deepcopy(config)
    for text in overrides or []:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(
                    f"override {text!r}: {'.'.join(path[: i + 1])} is a value, not a section"
                )
            node = child
        node[path[-1]] = value
    return out


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def build_spec(
    config: dict[str, Any] | None = None, overrides: list[str] | None = None
) -> ClassifierSpec:
    """Defaults <- ``config`` <- overrides, validated. Errors name the field."""
    config = dict(config or {})
    config = apply_overrides(config, overrides)
    job = config.get("job", "classifier")
    if not isinstance(job, str):
        raise SpecError(f"job: expected a job name, got {job!r}")
    model = _model_for(job)
    merged = _deep_update(default_spec(job), config)
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise SpecError(_describe(exc, model)) from None


def load_spec(path: str | Path, overrides: list[str] | None = None) -> ClassifierSpec:
    """Read a YAML spec (as written by :func:`save_spec` or by hand) and validate it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        # the C loader when PyYAML has it: a batch run's spec lists every image (100k lines)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}  # noqa: S506
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from None
    except RecursionError:
        raise SpecError(f"{path}: YAML nested too deeply to be a job spec") from None
    if not isinstance(config, dict):
        raise SpecError(f"{path}: a spec is a mapping of fields, got {type(config).__name__}")
    try:
        return build_spec(config, overrides)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: YAML nested too deeply to be a job spec") from None


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Sections as blocks, short lists inline (``scale: [0.08, 1.0]``)."""


_Dumper.add_representer(
    list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


def to_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def spec_to_yaml(spec: BaseModel) -> str:
    return to_yaml(spec.model_dump(mode="json"))


def save_spec(spec: BaseModel, path: str | Path) -> Path:
    """Write the resolved spec as YAML (atomically: a crash never leaves half a config)."""
    from headless.store import atomic_write_text

    return atomic_write_text(path, spec_to_yaml(spec))


# ----------------------------------------------------------------------------------------------
# messages


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model that holds ``loc[-1]``, for "did you mean" hints."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _describe(exc: ValidationError, model: type[BaseModel]) -> str:
    parts = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not isinstance(p, int))
        name = ".".join(str(p) for p in loc) or "spec"
        if err["type"] == "extra_forbidden":
            known = _fields_at(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = ""
            if close:
                suggestion = ".".join([*map(str, loc[:-1]), close[0]])
                hint = f" (did you mean {suggestion!r}?)"
            parts.append(f"{name}: unknown field{hint}")
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            parts.append(f"{name}: {msg} (got {err.get('input')!r})" if loc else msg)
    return "invalid spec: " + "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# learning-rate schedule (pure functions of the step, so a resumed run is exactly on schedule)


def derived_gamma(lr: float, target_lr: float, num_decays: int) -> float:
    """The step-schedule factor that takes ``lr`` to ``target_lr`` in ``num_decays`` decays."""
    if num_decays <= 0 or target_lr <= 0:
        return 1.0 if num_decays <= 0 else 0.0
    return (target_lr / lr) ** (1.0 / num_decays)


def lr_at(opt: OptConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate used for optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up over ``warmup_epochs``; then ``cosine`` from ``lr`` to ``target_lr`` (0 by
    default) at the end of training, or ``step``: multiply by ``gamma`` every ``step_size``
    epochs, with gamma derived from ``target_lr`` when not given, or ``constant``.
    """
    warm = int(round(opt.warmup_epochs * steps_per_epoch))
    target = opt.target_lr if opt.target_lr is not None else 0.0
    if opt.scheduler == "cosine":
        span = max(1, total_steps - warm)
        t = min(max(step - warm, 0), span) / span
        lr = target + (opt.lr - target) * 0.5 * (1.0 + math.cos(math.pi * t))
    elif opt.scheduler == "step":
        size = max(1, opt.step_size * steps_per_epoch)
        n_decays = (max(total_steps, 1) - 1) // size
        gamma = opt.gamma
        if gamma is None and opt.target_lr is not None:
            gamma = derived_gamma(opt.lr, opt.target_lr, n_decays)
        elif gamma is None:
            gamma = 0.1
        lr = opt.lr * gamma ** (step // size)
    else:
        lr = opt.lr
    if warm and step < warm:
        lr = lr * (step + 1) / warm
    return float(lr)
