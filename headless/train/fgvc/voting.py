"""Multi-head voting (IELT's MHV) and the local enhancement of the vote counts.

Every head votes for the ``k`` patches its CLS attention ranks highest; the votes are counted
per patch, the count map is enhanced locally (a 3x3 kernel, fixed or learnable, optionally at
several dilations keeping the maximum over scales, as in seed 002), and the patches are ranked
by the enhanced count. Ties keep the lower patch index first (a stable sort), so the ranking is
a pure function of the attention.

IELT's learnable kernel only shapes a ranking (indices carry no gradient), so it receives no
gradient from the loss; it is kept for fidelity with the reference and its ablation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: IELT's fixed kernel (a binomial 3x3, unnormalised as in the reference).
IELT_KERNEL = ((1.0, 2.0, 1.0), (2.0, 4.0, 2.0), (1.0, 2.0, 1.0))


def vote_counts(cls_attn: torch.Tensor, k: int) -> torch.Tensor:
    """(B, heads, P) CLS-to-patch attention -> (B, P) number of heads voting for each patch."""
    b, _, p = cls_attn.shape
    k = min(k, p)
    top = cls_attn.topk(k, dim=-1).indices.reshape(b, -1)
    counts = torch.zeros(b, p, dtype=torch.float32, device=cls_attn.device)
    return counts.scatter_add_(1, top, torch.ones_like(top, dtype=torch.float32))


def enhance_counts(counts: torch.Tensor, grid: tuple[int, int], kernel: torch.Tensor,
                   dilations: tuple[int, ...] = (1,), bias: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Counts (B, P) on a (gh, gw) grid convolved with ``kernel`` (3x3, zero padding) at each
    dilation; the maximum over dilations. Returns (B, P)."""
    b = counts.shape[0]
    x = counts.reshape(b, 1, *grid).to(kernel.dtype)
    w = kernel.reshape(1, 1, 3, 3)
    outs = [F.conv2d(x, w, bias, padding=d, dilation=d) for d in dilations]
    out = outs[0] if len(outs) == 1 else torch.stack(outs).amax(0)
    return out.reshape(b, -1)


def rank_patches(scores: torch.Tensor) -> torch.Tensor:
    """Patch indices by descending score, ties by index (stable)."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


class MultiHeadVoting(nn.Module):
    """Votes, counts, enhancement and ranking for one layer's CLS attention."""

    def __init__(self, vote_perhead: int = 24, enhancement: str = "fixed",
                 dilations: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        if enhancement not in ("none", "fixed", "learnable"):
            raise ValueError(f"unknown enhancement {enhancement!r}")
        self.vote_perhead = vote_perhead
        self.enhancement = enhancement
        self.dilations = tuple(int(d) for d in dilations)
        kernel = torch.tensor(IELT_KERNEL)
        if enhancement == "learnable":
            conv = nn.Conv2d(1, 1, 3, padding=1)  # IELT: nn.Conv2d(1, 1, 3, 1, 1), default init
            self.weight = nn.Parameter(conv.weight.detach().reshape(3, 3).clone())
            self.bias = nn.Parameter(conv.bias.detach().clone())
        else:
            self.register_buffer("kernel", kernel, persistent=False)

    def scores(self, cls_attn: torch.Tensor, grid: tuple[int, int],
               enhance: bool = True) -> torch.Tensor:
        """(B, P) enhanced vote counts of (B, heads, P) CLS attention."""
        counts = vote_counts(cls_attn.float(), self.vote_perhead)
        if not enhance or self.enhancement == "none":
            return counts
        if self.enhancement == "learnable":
            return enhance_counts(counts, grid, self.weight.float(), self.dilations,
                                  self.bias.float())
        return enhance_counts(counts, grid, self.kernel, self.dilations)

    def forward(self, cls_attn: torch.Tensor, grid: tuple[int, int], select: int,
                enhance: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``select`` best patches (B, select) (0-based patch indices) and the scores."""
        scores = self.scores(cls_attn, grid, enhance)
        return rank_patches(scores)[:, :select], scores
