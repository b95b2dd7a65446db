"""The DINO projection head and the multi-crop wrapper (facebookresearch/dino conventions).

Head: ``nlayers`` MLP (GELU, optional BatchNorm) to a ``bottleneck_dim`` vector, L2-normalised,
then a weight-normalised linear layer without bias to ``out_dim``; its norm ``g`` starts at 1 and,
with ``norm_last_layer``, stays frozen (the reference's stabiliser for ViTs).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _weight_norm(layer: nn.Linear) -> nn.Module:
    """``weight_norm`` with the reference's parameter names (``weight_g``, ``weight_v``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecated API keeps the names
        return nn.utils.weight_norm(layer)


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 65536, use_bn: bool = False,
                 norm_last_layer: bool = True, nlayers: int = 3, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            for _ in range(nlayers - 2):
                layers.append(nn.Linear(hidden_dim, hidden_dim))
                if use_bn:
                    layers.append(nn.BatchNorm1d(hidden_dim))
                layers.append(nn.GELU())
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = _weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


class MultiCropWrapper(nn.Module):
    """Backbone over each run of same-resolution crops in one forward, then the head on all."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if not isinstance(x, list):
            x = [x]
        sizes = torch.tensor([inp.shape[-1] for inp in x])
        counts = torch.unique_consecutive(sizes, return_counts=True)[1]
        ends = torch.cumsum(counts, 0).tolist()
        start, outputs = 0, []
        for end in ends:
            out = self.backbone(torch.cat(x[start:end]))
            if isinstance(out, tuple):
                out = out[0]
            outputs.append(out)
            start = end
        return self.head(torch.cat(outputs))
