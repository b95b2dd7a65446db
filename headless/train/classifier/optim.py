"""The optimiser (SGD / Adam / AdamW, no weight decay on biases, norms and tokens) and the EMA.

The learning rate is a pure function of the step (:func:`headless.jobs.spec.lr_at`), set by the
training loop before every step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from headless.train.classifier.models import ModelError


def build_optimizer(model: nn.Module, opt: Any) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over trainable parameters; biases, norms and tokens get no decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("cls_token", "reg_token", "pos_embed")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [g for g in ({"params": decay, "weight_decay": opt.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if not groups:
        raise ModelError("nothing to train: every parameter is frozen")
    if opt.type == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum,
                               nesterov=opt.nesterov and opt.momentum > 0)
    if opt.type == "adam":
        return torch.optim.Adam(groups, lr=opt.lr)
    return torch.optim.AdamW(groups, lr=opt.lr)


def make_ema(model: nn.Module, decay: float) -> Any:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
