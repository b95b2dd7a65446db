"""DINO's per-iteration schedules, as arrays indexed by the global step (exact on resume).

``cosine_schedule`` reproduces ``utils.cosine_scheduler`` of facebookresearch/dino: a linear
warm-up from ``start_warmup_value`` to ``base`` over ``warmup_epochs``, then
``final + (base - final) * (1 + cos(pi * i / n)) / 2`` for ``i = 0 .. n-1`` (so the last value is
one step short of ``final``, as in the reference).
"""

from __future__ import annotations

import numpy as np


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0, start_warmup_value: float = 0.0) -> np.ndarray:
    """One value per step of ``epochs * steps_per_epoch`` (float64)."""
    total = int(epochs * steps_per_epoch)
    warm_iters = min(int(warmup_epochs * steps_per_epoch), total)
    warm = np.linspace(start_warmup_value, base, warm_iters) if warm_iters > 0 else np.array([])
    iters = np.arange(total - warm_iters)
    n = max(len(iters), 1)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / n))
    out = np.concatenate((warm, cos))
    assert len(out) == total
    return out


def teacher_temp_schedule(warmup_temp: float, temp: float, warmup_epochs: int,
                          epochs: int) -> np.ndarray:
    """Per-epoch teacher temperature: linear warm-up, then constant (DINOLoss)."""
    warmup_epochs = min(warmup_epochs, epochs)
    return np.concatenate((np.linspace(warmup_temp, temp, warmup_epochs),
                           np.ones(epochs - warmup_epochs) * temp))
