"""The teacher backbone written in the layout the rest of the project loads.

``teacher_backbone.pth``: a plain state dict of tensors; for ViTs the official DINO key layout
(= timm's), read by :func:`headless.features.backbones.load_backbone` as the matching
``dino_vit*`` backbone; for ResNet-50 torchvision's keys without ``fc`` (the classifier job's
``model.weights``). ``export.json`` names the architecture and that backbone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headless.train.ssl.extract import EXPORT_FILE, EXPORT_META
from headless.train.ssl.models import features_backbone_name


def export_teacher(run_dir: Path, backbone: Any, spec: Any) -> Path:
    import os

    import torch

    from headless.store import atomic_write_json

    sd = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()
          if not k.startswith(("head.", "fc."))}
    path = run_dir / EXPORT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(sd, tmp)
    os.replace(tmp, path)
    arch = spec.model.arch
    name = None if arch == "resnet50" else features_backbone_name(arch, spec.model.patch_size)
    atomic_write_json(run_dir / EXPORT_META, {
        "arch": arch if arch == "resnet50" else f"{arch}/{spec.model.patch_size}",
        "features_backbone": name, "weights": EXPORT_FILE, "patch_size": spec.model.patch_size,
        "embed_dim": int(backbone.embed_dim),
    })
    return path
