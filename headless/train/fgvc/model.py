"""IELT (Xu et al., TMM 2023) on a timm ViT, with seed 002's additions, and the linear baseline.

Blocks 1..L-1 of the backbone run as usual; after each, multi-head voting (:mod:`.voting`)
picks that layer's share of patch tokens. Cross-layer refinement (CLR): CLS (of block L-1) and
all selected tokens go through one more block and a norm; its own votes rank the CLR tokens.
Dynamic selection (DSM): after a warm-up the per-layer shares follow how many of the CLR's
top-voted tokens came from each layer (IELT's ``update_layer_select``). The complementary
assistant (CAM): CLS + the CLR's 24 top tokens through a key block; the part logits are
``head(key CLS) + softmax(head(CLR CLS)) * head.weight.sum(-1)`` and the loss
``(1 - alpha) CE(part) + alpha CE(complement)``. Seed 002's inattentive-token merger turns the
tokens that were not selected into ``merge_tokens`` extra CLR tokens (a learned, masked softmax
combination within each layer, then a learned mix over layers).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from headless.train.fgvc.voting import MultiHeadVoting, rank_patches, vote_counts


def attend(blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One timm ``Block`` on ``x`` (B, N, C) -> (output, CLS attention (B, heads, N)).

    The block output goes through fused attention as in timm; the CLS row of the attention is
    computed on the side (one query), so the votes cost little next to the block itself.
    """
    attn = blk.attn
    h = blk.norm1(x)
    b, n, _ = h.shape
    heads, hd = attn.num_heads, attn.head_dim
    gate = attn.gate(h).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(h).reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    drop = attn.attn_drop.p if attn.training else 0.0
    o = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
    cls_attn = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).float().softmax(-1)[:, :, 0]
    o = o.transpose(1, 2).reshape(b, n, heads * hd)
    if getattr(attn, "norm", None) is not None:
        o = attn.norm(o)
    if gate is not None:
        o = o * gate
    o = attn.proj_drop(attn.proj(o))
    x = x + blk.drop_path1(blk.ls1(o))
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return x, cls_attn


def embed(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch embedding + position embedding (resized to the input) + timm's pre-norm."""
    x = vit.patch_embed(images)
    x = vit._pos_embed(x)
    x = vit.patch_drop(x)
    return vit.norm_pre(x)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), idx (B, K) -> (B, K, C)."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


class TokenMerger(nn.Module):
    """Seed 002: the tokens a layer did not forward, merged into ``m`` extra tokens.

    Within a layer, token ``j`` gets weight ``softmax_j(w_i . x_j)`` over the unselected tokens
    for output ``i``; the layers' merged tokens are mixed with learned softmax weights.
    """

    def __init__(self, dim: int, m: int, n_layers: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, m)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)  # start as the mean of the unselected tokens
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))

    def merge_layer(self, patches: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """patches (B, P, C), selected (B, P) bool -> (B, m, C)."""
        s = self.score(patches).float()  # (B, P, m)
        s = s.masked_fill(selected[..., None], float("-inf"))
        w = torch.nan_to_num(s.softmax(1), nan=0.0)  # a layer that forwarded everything: zeros
        return torch.einsum("bpm,bpc->bmc", w.to(patches.dtype), patches)

    def combine(self, merged: list[torch.Tensor]) -> torch.Tensor:
        w = self.layer_logits.softmax(0).to(merged[0].dtype)
        return torch.einsum("l,lbmc->bmc", w, torch.stack(merged))


@dataclass
class FgvcOutput:
    logits: torch.Tensor  # (B, classes): the prediction (part logits with CAM)
    complement: torch.Tensor | None = None  # CAM: logits of the CLR CLS
    embedding: torch.Tensor | None = None  # CLS of block L-1 (triplet loss)
    clr_rank: torch.Tensor | None = None  # (B, k) 1-based CLR token positions, by CLR votes
    layer_counts: list[int] = field(default_factory=list)  # tokens selected per layer
    vote_maps: list[torch.Tensor] = field(default_factory=list)  # per layer (B, gh, gw)


def _reinit(module: nn.Module) -> nn.Module:
    from timm.models.vision_transformer import init_weights_vit_timm

    for m in module.modules():
        init_weights_vit_timm(m)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class IELTModel(nn.Module):
    """IELT head on a timm ViT (``vit``); ``cfg`` is the spec's ``ielt`` section."""

    def __init__(self, vit: nn.Module, n_classes: int, cfg: Any, num_prefix: int,
                 patch_size: int) -> None:
        super().__init__()
        self.vit = vit
        self.cfg = cfg
        self.num_prefix, self.patch_size = num_prefix, patch_size
        depth = len(vit.blocks)
        if depth < 2:
            raise ValueError("IELT needs a backbone with at least two blocks")
        self.n_layers = depth - 1
        dim = int(vit.embed_dim)
        self.voting = MultiHeadVoting(cfg.vote_perhead, cfg.enhancement, tuple(cfg.dilations))
        fresh = cfg.clr_init == "random"
        self.clr_block = copy.deepcopy(vit.blocks[-1])
        self.clr_norm = nn.LayerNorm(dim, eps=1e-6)
        if not fresh and isinstance(getattr(vit, "norm", None), nn.LayerNorm):
            self.clr_norm.load_state_dict(vit.norm.state_dict())
        if fresh:
            _reinit(self.clr_block)
        if cfg.cam:
            self.key_block = copy.deepcopy(self.clr_block)
            self.key_norm = copy.deepcopy(self.clr_norm)
        self.merger = TokenMerger(dim, cfg.merge_tokens, self.n_layers) \
            if cfg.merge_tokens > 0 else None
        vit.blocks[-1].requires_grad_(False)  # replaced by the CLR block: never run
        self.head = nn.Linear(dim, n_classes)
        nn.init.zeros_(self.head.weight)  # IELT's load_from zeroes the head
        nn.init.zeros_(self.head.bias)
        rate = torch.ones(self.n_layers, dtype=torch.float64) / self.n_layers
        if cfg.select_rate:
            if len(cfg.select_rate) != self.n_layers:
                raise ValueError(f"ielt.select_rate has {len(cfg.select_rate)} entries; this "
                                 f"backbone has {self.n_layers} voting layers")
            rate = torch.tensor(cfg.select_rate, dtype=torch.float64)
            rate = rate / rate.sum()
        self.register_buffer("select_rate", rate)  # DSM state: saved with the weights

    # ------------------------------------------------------------------------------------------
    def select_nums(self, n_patches: int) -> list[int]:
        nums = torch.round(self.select_rate * self.cfg.total_num).long().tolist()
        return [max(1, min(int(k), n_patches)) for k in nums]

    def _select(self, cls_attn: torch.Tensor, grid: tuple[int, int], k: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        patch_attn = cls_attn[:, :, self.num_prefix:]
        scores = self.voting.scores(patch_attn, grid)
        if self.cfg.selection == "random":  # the ablation: MHV's choice replaced by chance
            order = torch.rand(scores.shape, device=scores.device).argsort(-1)
        else:
            order = rank_patches(scores)
        return order[:, :k], scores

    def forward_all(self, images: torch.Tensor, keep_maps: bool = False) -> FgvcOutput:
        vit, p = self.vit, self.patch_size
        grid = (images.shape[-2] // p, images.shape[-1] // p)
        x = embed(vit, images)
        n_patches = grid[0] * grid[1]
        nums = self.select_nums(n_patches)
        selected, merged, maps = [], [], []
        for t in range(self.n_layers):
            x, cls_attn = attend(vit.blocks[t], x)
            idx, scores = self._select(cls_attn, grid, nums[t])
            selected.append(gather_tokens(x, idx + self.num_prefix))
            if self.merger is not None:
                mask = torch.zeros(scores.shape, dtype=torch.bool, device=x.device)
                mask.scatter_(1, idx, True)
                merged.append(self.merger.merge_layer(x[:, self.num_prefix:], mask))
            if keep_maps:
                maps.append(scores.detach().reshape(-1, *grid))
        cls_token = x[:, :1]
        parts = [cls_token, *selected]
        if self.merger is not None:
            parts.append(self.merger.combine(merged))
        clr, clr_attn = attend(self.clr_block, torch.cat(parts, 1))
        clr = self.clr_norm(clr)
        # IELT: the CLR's own votes (vote_perhead per head, no enhancement), its 24 best tokens
        k = min(self.cfg.clr_select, clr.shape[1] - 1)
        clr_votes = vote_counts(clr_attn[:, :, 1:], self.cfg.vote_perhead)
        clr_rank = rank_patches(clr_votes)[:, :k] + 1
        out = FgvcOutput(self.head(clr[:, 0]), embedding=cls_token[:, 0], clr_rank=clr_rank,
                         layer_counts=nums, vote_maps=maps)
        if self.cfg.cam:
            key_in = torch.cat([cls_token, gather_tokens(clr, clr_rank)], 1)
            key, _ = attend(self.key_block, key_in)
            key = self.key_norm(key)
            comp = self.head(clr[:, 0])
            assist = comp.float().softmax(-1) * self.head.weight.sum(-1).float()
            out.logits = self.head(key[:, 0]) + assist.to(comp.dtype)
            out.complement = comp
        return out

    def forward(self, images: torch.Tensor, full: bool = False) -> Any:
        """Logits; with ``full`` the whole :class:`FgvcOutput` (what DDP must see)."""
        out = self.forward_all(images)
        return out if full else out.logits

    @torch.no_grad()
    def update_selection(self, out: FgvcOutput) -> torch.Tensor:
        """DSM: move the layer shares towards where the CLR's top tokens came from."""
        bounds = torch.tensor(out.layer_counts, device=out.clr_rank.device).cumsum(0)
        pos = (out.clr_rank - 1).reshape(-1)
        below = (pos[None, :] < bounds[:, None]).sum(1)
        layer_count = torch.diff(below, prepend=below.new_zeros(1)).double().cpu()
        if layer_count.sum() <= 0:
            return self.select_rate
        alpha = self.cfg.dsm_alpha
        new_rate = layer_count / layer_count.sum()
        rate = self.select_rate.cpu() * (1 - alpha) + alpha * new_rate
        self.select_rate.copy_(rate / rate.sum())
        return layer_count


class LinearModel(nn.Module):
    """The baseline: the whole backbone, its normed CLS, a linear head."""

    def __init__(self, vit: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.vit = vit
        self.head = nn.Linear(int(vit.embed_dim), n_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward_all(self, images: torch.Tensor, keep_maps: bool = False) -> FgvcOutput:
        cls = self.vit.forward_features(images)[:, 0]
        return FgvcOutput(self.head(cls), embedding=cls)

    def forward(self, images: torch.Tensor, full: bool = False) -> Any:
        out = self.forward_all(images)
        return out if full else out.logits
