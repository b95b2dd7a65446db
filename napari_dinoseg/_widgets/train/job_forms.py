"""The Train dock's other jobs as plain values: ``fgvc`` (DINOv2 + IELT) and ``dino`` (DINO
self-supervised pre-training), without Qt.

Each form is the fields the dock shows for that job; :meth:`spec_dict` turns them into the
dictionary ``dinoseg train`` reads from YAML (empty text and 0 in an "auto" field mean "not
given", i.e. the engine's default), so ``headless.jobs.spec.build_spec`` of it is the spec the CLI
builds from the same values. Defaults are the engine's (GPU-sized); the user edits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the job combo: (label, job name)
JOBS = (("classifier (seed 000)", "classifier"),
        ("fgvc: DINOv2 + IELT (seed 002)", "fgvc"),
        ("dino: self-supervised pre-training (seed 003)", "dino"))

FGVC_BACKBONES = ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14",
                  "dinov2_vits14_reg", "dinov2_vitb14_reg", "dinov2_vitl14_reg",
                  "dinov2_vitg14_reg", "dino_vits16", "dino_vitb16", "vit_b16",
                  "test_dinov2_tiny14_reg", "test_dino_tiny16")
FGVC_LAYOUTS = ("auto", "imagefolder", "cub", "flowers102", "dogs")
DINO_ARCHS = ("vit_small", "vit_tiny", "vit_base", "resnet50", "test_vit")

#: spec fields of these jobs -> the dock's labels (merged into the controller's FORM_WORDS)
JOB_WORDS = {
    "data.pretext": "'pretext folder'", "data.knn_root": "'k-NN folder'",
    "data.test_root": "'test folder'", "data.layout": "'layout'",
    "data.sub_batch": "'sub-batch'", "model.backbone": "'backbone'", "model.head": "'head'",
    "model.arch": "'architecture'", "model.patch_size": "'patch size'",
    "model.out_dim": "'out dim'", "model.head_hidden_dim": "'head hidden'",
    "model.head_bottleneck_dim": "'head bottleneck'", "model.init_weights": "'init weights'",
    "model.drop_path_rate": "'drop path'", "crops.global_size": "'global crop'",
    "crops.local_size": "'local crop'", "crops.n_local": "'local crops'",
    "opt.teacher_temp": "'teacher T'", "opt.warmup_teacher_temp": "'teacher T warm-up'",
    "opt.warmup_teacher_temp_epochs": "'teacher T warm-up epochs'",
    "opt.student_temp": "'student T'", "opt.momentum_teacher": "'teacher momentum'",
    "opt.warmup_epochs": "'warm-up epochs'", "opt.weight_decay": "'weight decay'",
    "opt.clip_grad": "'clip grad'", "ielt.vote_perhead": "'votes per head'",
    "ielt.total_num": "'selected tokens'", "ielt.dilations": "'dilations'",
    "ielt.merge_tokens": "'merge tokens'", "ielt.loss_alpha": "'CAM alpha'",
    "loss.triplet_weight": "'triplet weight'", "loss.triplet_margin": "'triplet margin'",
    "eval_every": "'evaluate every'",
}


def _text(value: str) -> str | None:
    return value.strip() or None


def _ints(text: str) -> list[int]:
    """'1, 2, 4' -> [1, 2, 4] (ValueError in the dock's words)."""
    try:
        return [int(p) for p in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"'dilations' must be whole numbers such as '1, 2, 4', got {text!r}"
                         ) from None


@dataclass
class FgvcForm:
    """The fgvc job's fields (seed 002). 0 in lr / sub-batch / clip grad = the engine's auto."""

    job: str = "fgvc"
    data_root: str = ""
    layout: str = "auto"
    test_root: str = ""
    boxes: str = ""
    image_size: int = 448
    batch_size: int = 30
    sub_batch: int = 0
    val_fraction: float = 0.1
    num_workers: int = 4
    backbone: str = "dinov2_vits14"
    weights: str = "official"
    head: str = "ielt"
    vote_perhead: int = 24
    total_num: int = 126
    selection: str = "vote"
    enhancement: str = "fixed"
    dilations: str = "1, 2, 4"
    dsm: bool = True
    cam: bool = True
    merge_tokens: int = 4
    loss_alpha: float = 0.4
    triplet_weight: float = 1.0
    triplet_margin: float = 1.0
    crop: str = "random_resized"
    optimizer: str = "auto"
    lr: float = 0.0
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    clip_grad: float = 5.0
    num_epochs: int = 50
    eval_every: int = 1
    seed: int = 0
    log_interval: int = 10
    device: str = "auto"
    name: str = ""

    def spec_dict(self) -> dict[str, Any]:
        return {
            "job": "fgvc", "name": _text(self.name), "seed": self.seed, "device": self.device,
            "num_epochs": self.num_epochs, "eval_every": self.eval_every,
            "data": {"root": self.data_root.strip(), "layout": self.layout,
                     "test_root": _text(self.test_root), "boxes": _text(self.boxes),
                     "image_size": self.image_size, "batch_size": self.batch_size,
                     "sub_batch": self.sub_batch or None, "val_fraction": self.val_fraction,
                     "num_workers": self.num_workers},
            "crop": {"type": self.crop},
            "model": {"backbone": self.backbone.strip(), "weights": _text(self.weights),
                      "head": self.head},
            "ielt": {"vote_perhead": self.vote_perhead, "total_num": self.total_num,
                     "selection": self.selection, "enhancement": self.enhancement,
                     "dilations": _ints(self.dilations), "dsm": self.dsm, "cam": self.cam,
                     "merge_tokens": self.merge_tokens, "loss_alpha": self.loss_alpha},
            "loss": {"triplet_weight": self.triplet_weight,
                     "triplet_margin": self.triplet_margin},
            "opt": {"type": self.optimizer, "lr": self.lr or None,
                    "weight_decay": self.weight_decay, "warmup_epochs": self.warmup_epochs,
                    "label_smoothing": self.label_smoothing, "clip_grad": self.clip_grad or None},
            "log": {"interval": self.log_interval},
        }

    def problems(self) -> str | None:
        if not self.data_root.strip():
            return "'dataset folder' is empty: choose the fine-grained dataset's folder"
        return None


@dataclass
class DinoForm:
    """The dino job's fields. Empty optimizer / 0 lr = the architecture's recipe (engine)."""

    job: str = "dino"
    pretext: str = ""
    knn_root: str = ""
    batch_size: int = 64
    num_workers: int = 4
    global_size: int = 224
    local_size: int = 96
    n_local: int = 8
    arch: str = "vit_small"
    patch_size: int = 16
    out_dim: int = 65536
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    norm_last_layer: bool = True
    use_bn_in_head: bool = False
    drop_path_rate: float = 0.1
    init_weights: str = ""
    optimizer: str = ""
    lr: float = 0.0
    warmup_epochs: int = 10
    momentum_teacher: float = 0.996
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_temp_epochs: int = 30
    student_temp: float = 0.1
    precision: str = "auto"
    num_epochs: int = 100
    eval_every: int = 10
    seed: int = 0
    log_interval: int = 10
    device: str = "auto"
    name: str = ""

    def spec_dict(self) -> dict[str, Any]:
        return {
            "job": "dino", "name": _text(self.name), "seed": self.seed, "device": self.device,
            "num_epochs": self.num_epochs, "eval_every": self.eval_every,
            "data": {"pretext": self.pretext.strip(), "knn_root": _text(self.knn_root),
                     "batch_size": self.batch_size, "num_workers": self.num_workers},
            "crops": {"global_size": self.global_size, "local_size": self.local_size,
                      "n_local": self.n_local},
            "model": {"arch": self.arch, "patch_size": self.patch_size, "out_dim": self.out_dim,
                      "head_hidden_dim": self.head_hidden_dim,
                      "head_bottleneck_dim": self.head_bottleneck_dim,
                      "norm_last_layer": self.norm_last_layer,
                      "use_bn_in_head": self.use_bn_in_head,
                      "drop_path_rate": self.drop_path_rate,
                      "init_weights": _text(self.init_weights)},
            "opt": {"optimizer": _text(self.optimizer), "lr": self.lr or None,
                    "warmup_epochs": self.warmup_epochs,
                    "momentum_teacher": self.momentum_teacher,
                    "warmup_teacher_temp": self.warmup_teacher_temp,
                    "teacher_temp": self.teacher_temp,
                    "warmup_teacher_temp_epochs": self.warmup_teacher_temp_epochs,
                    "student_temp": self.student_temp, "precision": self.precision},
            "log": {"interval": self.log_interval},
        }

    def problems(self) -> str | None:
        # an empty path would be read as the current folder and searched recursively
        if not self.pretext.strip():
            return "'pretext folder' is empty: choose a folder of unlabelled images"
        return None


def run_job(run_dir: str | Path) -> str | None:
    """The job type of a run folder, from its ``config.yaml`` (None when unreadable)."""
    import yaml

    from headless.jobs.runs import CONFIG_NAME

    try:
        cfg = yaml.safe_load((Path(run_dir) / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    job = cfg.get("job", "classifier") if isinstance(cfg, dict) else None
    return job if isinstance(job, str) else None


def knn_points(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(step, top-1 share)`` of a dino run's k-NN evaluations (logged in percent; the
    smallest k when several)."""
    out = []
    for rec in records:
        if rec.get("kind") != "eval":
            continue
        keys = sorted((k for k in rec if k.startswith("knn") and k.endswith("_top1")),
                      key=lambda k: int(k[3:-5]) if k[3:-5].isdigit() else 0)
        if keys and isinstance(rec[keys[0]], (int, float)):
            out.append((int(rec.get("step", 0)), float(rec[keys[0]]) / 100.0))
    return out
