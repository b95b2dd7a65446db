"""Losses of seed 002: IELT's part / complement mix, and the batch-hard triplet loss.

The triplet loss follows the seed's ``compute_triplet_loss``: Euclidean distances between the
embeddings of a (sub-)batch; for every anchor the farthest same-class sample and the nearest
other-class sample; ``relu(d_pos - d_neg + margin)`` averaged over anchors that have both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_hard_triplet(embeddings: torch.Tensor, labels: torch.Tensor,
                       margin: float = 1.0) -> torch.Tensor:
    """Batch-hard triplet loss; 0 when no anchor has both a positive and a negative."""
    emb = embeddings.float()
    d = torch.cdist(emb, emb, p=2)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = same & ~eye
    neg = ~same
    hardest_pos = torch.where(pos, d, torch.zeros_like(d)).amax(1)
    hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).amin(1)
    valid = pos.any(1) & neg.any(1)
    if not bool(valid.any()):
        return emb.sum() * 0.0  # keeps the graph (and DDP) intact
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def ielt_loss(logits: torch.Tensor, complement: torch.Tensor | None, labels: torch.Tensor,
              alpha: float = 0.4, label_smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - alpha) CE(part) + alpha CE(complement)``; plain CE without CAM."""
    ce = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if complement is None:
        return ce
    cc = F.cross_entropy(complement.float(), labels, label_smoothing=label_smoothing)
    return (1 - alpha) * ce + alpha * cc
