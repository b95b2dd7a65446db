"""The dino job's fields (self-supervised pre-training, seed 003): pretext folder, multi-crop,
student / teacher and DINO's temperatures. Defaults are the engine's (:class:`.job_forms.DinoForm`);
empty optimizer / learning rate take the architecture's recipe."""

from __future__ import annotations

from napari_dinoseg._widgets.train.job_fields import Field, JobFields
from napari_dinoseg._widgets.train.job_forms import DINO_ARCHS, DinoForm

FIELDS = (
    Field("pretext", "pretext folder", "data", browse="folder",
          placeholder="unlabelled images (searched recursively)"),
    Field("knn_root", "k-NN folder", "data", browse="folder",
          placeholder="optional: train/ + val/ for a k-NN monitor"),
    Field("batch_size", "batch size", "data", lo=1, hi=65536),
    Field("num_workers", "loader workers", "data", hi=64),
    Field("global_size", "global crop", "data", lo=16, hi=4096),
    Field("local_size", "local crop", "data", lo=8, hi=4096),
    Field("n_local", "local crops", "data", hi=64),
    Field("arch", "architecture", "model", choices=DINO_ARCHS),
    Field("patch_size", "patch size", "model", choices=(("16", 16), ("8", 8))),
    Field("out_dim", "out dim", "model", lo=2, tip="prototypes of the DINO head"),
    Field("head_hidden_dim", "head hidden", "model", lo=1, hi=65536),
    Field("head_bottleneck_dim", "head bottleneck", "model", lo=1, hi=65536),
    Field("norm_last_layer", "freeze the norm of the head's last layer", "model"),
    Field("use_bn_in_head", "BatchNorm in the head (short runs, small sets)", "model"),
    Field("drop_path_rate", "drop path", "model", hi=0.99, step=0.05),
    Field("init_weights", "init weights", "model", browse="file",
          placeholder="optional: start the backbone from a file"),
    Field("optimizer", "optimizer", "opt",
          choices=(("by architecture", ""), ("adamw", "adamw"), ("sgd", "sgd"))),
    Field("lr", "learning rate", "opt", hi=10.0, step=1e-4, decimals=6, special="by arch",
          tip="at batch 256 (scaled by batch / 256); ViT 5e-4, ResNet-50 0.03"),
    Field("warmup_epochs", "warm-up epochs", "opt", hi=100000),
    Field("momentum_teacher", "teacher momentum", "opt", hi=1.0, step=0.001, decimals=4),
    Field("warmup_teacher_temp", "teacher T warm-up", "opt", lo=0.001, hi=10.0, step=0.01,
          decimals=3),
    Field("teacher_temp", "teacher T", "opt", lo=0.001, hi=10.0, step=0.01, decimals=3),
    Field("warmup_teacher_temp_epochs", "teacher T warm-up epochs", "opt", hi=100000),
    Field("student_temp", "student T", "opt", lo=0.001, hi=10.0, step=0.01, decimals=3),
    Field("precision", "precision", "opt", choices=("auto", "fp32", "bf16", "fp16"),
          tip="GPU autocast; CPU runs in fp32"),
    Field("num_epochs", "epochs", "opt", lo=1, hi=100000),
    Field("eval_every", "k-NN every (epochs)", "opt", lo=1, hi=100000),
    Field("seed", "seed", "opt"),
    Field("log_interval", "log every (steps)", "opt", lo=1, hi=100000),
)


def dino_fields() -> JobFields:
    return JobFields("dino", DinoForm, FIELDS)
