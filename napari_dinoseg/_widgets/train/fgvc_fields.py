"""The fgvc job's fields (DINOv2 + IELT, seed 002): dataset layout, backbone and IELT's parts,
the triplet loss and the optimiser. Defaults are the engine's (:class:`.job_forms.FgvcForm`)."""

from __future__ import annotations

from napari_dinoseg._widgets.train.job_fields import Field, JobFields
from napari_dinoseg._widgets.train.job_forms import FGVC_BACKBONES, FGVC_LAYOUTS, FgvcForm

FIELDS = (
    Field("data_root", "dataset folder", "data", browse="folder",
          placeholder="ImageFolder train/ + test/, CUB_200_2011, Flowers-102 or Dogs"),
    Field("layout", "layout", "data", choices=FGVC_LAYOUTS),
    Field("test_root", "test folder", "data", browse="folder",
          placeholder="imagefolder: the test ImageFolder (else root/test)"),
    Field("boxes", "boxes file", "data", browse="file",
          placeholder="curated boxes for box-aware crops; optional"),
    Field("image_size", "image size", "data", lo=8, hi=4096, tip="IELT: 448"),
    Field("batch_size", "batch size", "data", lo=1, hi=4096,
          tip="images per step; a multiple of 3 with the triplet loss"),
    Field("sub_batch", "sub-batch", "data", hi=4096, special="whole batch",
          tip="images per forward; gradients accumulate over the batch"),
    Field("val_fraction", "validation share", "data", hi=0.9, step=0.05),
    Field("num_workers", "loader workers", "data", hi=64),
    Field("backbone", "backbone", "model", choices=FGVC_BACKBONES, editable=True),
    Field("weights", "weights", "model", choices=("official", "random"), editable=True,
          tip="official | random | a checkpoint file"),
    Field("head", "head", "model", choices=(("IELT", "ielt"), ("linear (baseline)", "linear"))),
    Field("vote_perhead", "votes per head", "model", lo=1, hi=4096),
    Field("total_num", "selected tokens", "model", lo=1, hi=100000),
    Field("selection", "selection", "model",
          choices=(("vote (MHV)", "vote"), ("random (no MHV)", "random"))),
    Field("enhancement", "vote enhancement", "model", choices=("fixed", "learnable", "none")),
    Field("dilations", "dilations", "model", tip="[1] = IELT; 1, 2, 4 = seed 002"),
    Field("dsm", "dynamic selection (DSM)", "model"),
    Field("cam", "complementary head (CAM)", "model"),
    Field("merge_tokens", "merge tokens", "model", hi=1024, special="off"),
    Field("loss_alpha", "CAM alpha", "model", hi=1.0, step=0.05),
    Field("crop", "crop", "opt", choices=(("RandomResizedCrop", "random_resized"),
                                          ("LocalizedRandomResizedCrop (boxes)", "localized"))),
    Field("triplet_weight", "triplet weight", "opt", hi=100.0, step=0.1, special="off"),
    Field("triplet_margin", "triplet margin", "opt", lo=0.01, hi=100.0, step=0.1),
    Field("optimizer", "optimizer", "opt", choices=("auto", "sgd", "adam", "adamw"),
          tip="auto: AdamW 1e-5 for DINO / DINOv2, SGD 2e-2 for vit_b16"),
    Field("lr", "learning rate", "opt", hi=10.0, step=1e-5, decimals=6, special="auto"),
    Field("weight_decay", "weight decay", "opt", hi=10.0, step=0.01, decimals=4),
    Field("warmup_epochs", "warm-up epochs", "opt", hi=10000.0, step=0.5),
    Field("label_smoothing", "label smoothing", "opt", hi=0.9, step=0.05),
    Field("clip_grad", "clip grad", "opt", hi=1000.0, step=0.5, special="off"),
    Field("num_epochs", "epochs", "opt", lo=1, hi=100000),
    Field("eval_every", "evaluate every (epochs)", "opt", lo=1, hi=100000),
    Field("seed", "seed", "opt"),
    Field("log_interval", "log every (steps)", "opt", lo=1, hi=100000),
)


def fgvc_fields() -> JobFields:
    return JobFields("fgvc", FgvcForm, FIELDS)
