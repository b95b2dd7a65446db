"""k-NN accuracy of the teacher during pre-training (an in-memory backbone, no cache)."""

from __future__ import annotations

from typing import Any

import torch


def knn_of_module(backbone: torch.nn.Module, root: str, arch: str, device: torch.device,
                  ks: tuple[int, ...] = (10, 20), size: int = 224) -> dict[str, Any]:
    """Weighted k-NN top-1 / top-5 of ``backbone``'s features on ``root/train`` -> ``root/val``."""
    from headless.progress import run as drive
    from headless.train.ssl.extract import FeatureModel, extract_features
    from headless.train.ssl.knn import knn_classify
    from headless.train.ssl.labelled import load_labelled

    lab = load_labelled(root)
    was_training = backbone.training
    backbone.eval()
    fm = FeatureModel(backbone, "resnet" if arch == "resnet50" else "vit", arch, "", str(device),
                      int(backbone.embed_dim))
    try:
        tr = drive(extract_features(fm, [p for p, _ in lab.train], size, cache=False))
        va = drive(extract_features(fm, [p for p, _ in lab.val], size, cache=False))
    finally:
        backbone.train(was_training)
    res = knn_classify(torch.from_numpy(tr), torch.tensor([c for _, c in lab.train]),
                       torch.from_numpy(va), torch.tensor([c for _, c in lab.val]), ks,
                       num_classes=len(lab.classes))
    out: dict[str, Any] = {}
    for r in res:
        out.update(r.as_dict())
    return out
