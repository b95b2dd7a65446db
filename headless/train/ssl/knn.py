"""Weighted k-NN classification on L2-normalised features (DINO's ``eval_knn.py``).

For each query the ``k`` most similar training features (cosine similarity ``s``) vote for
their class with weight ``exp(s / T)`` (T = 0.07); classes are ranked by their summed votes;
top-1 / top-5 are the shares of queries whose class is first / among the first five. Queries and
training features are both processed in chunks, merging running top-k lists, so the similarity
matrix held at once is ``query_chunk x train_chunk`` whatever the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass
class KnnResult:
    k: int
    top1: float  # percent
    top5: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {f"knn{self.k}_top1": self.top1, f"knn{self.k}_top5": self.top5}


def topk_neighbours(queries: torch.Tensor, train: torch.Tensor, k: int,
                    query_chunk: int = 1024, train_chunk: int = 16384
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities and indices of the ``k`` nearest training rows of every query (sorted)."""
    k = min(k, train.shape[0])
    sims_out, idx_out = [], []
    for q0 in range(0, queries.shape[0], query_chunk):
        q = queries[q0:q0 + query_chunk]
        best_s = q.new_full((q.shape[0], 0), float("-inf"))
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
        for t0 in range(0, train.shape[0], train_chunk):
            s = q @ train[t0:t0 + train_chunk].T
            kk = min(k, s.shape[1])
            s, i = s.topk(kk, dim=1)
            best_s = torch.cat([best_s, s], 1)
            best_i = torch.cat([best_i, i + t0], 1)
            best_s, order = best_s.topk(min(k, best_s.shape[1]), dim=1)
            best_i = best_i.gather(1, order)
        sims_out.append(best_s)
        idx_out.append(best_i)
    return torch.cat(sims_out), torch.cat(idx_out)


def knn_votes(sims: torch.Tensor, neighbour_labels: torch.Tensor, num_classes: int,
              temperature: float = 0.07) -> torch.Tensor:
    """Per-class summed weights ``exp(s / T)`` of the neighbours, shape (queries, classes)."""
    weights = (sims / temperature).exp()
    votes = sims.new_zeros((sims.shape[0], num_classes))
    return votes.scatter_add_(1, neighbour_labels, weights)


def knn_classify(train_features: torch.Tensor, train_labels: torch.Tensor,
                 test_features: torch.Tensor, test_labels: torch.Tensor,
                 ks: tuple[int, ...] = (10, 20, 100, 200), temperature: float = 0.07,
                 num_classes: int | None = None, query_chunk: int = 1024,
                 train_chunk: int = 16384, normalize: bool = True) -> list[KnnResult]:
    """Weighted k-NN top-1 / top-5 (percent) for each ``k`` (one neighbour search, max k)."""
    if normalize:
        train_features = F.normalize(train_features.float(), dim=1)
        test_features = F.normalize(test_features.float(), dim=1)
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    sims, idx = topk_neighbours(test_features, train_features, max(ks), query_chunk,
                                train_chunk)
    labels = train_labels.to(idx.device)[idx]
    out = []
    for k in ks:
        kk = min(k, sims.shape[1])
        votes = knn_votes(sims[:, :kk], labels[:, :kk], num_classes, temperature)
        ranked = votes.argsort(dim=1, descending=True, stable=True)
        hit = ranked == test_labels.to(ranked.device).view(-1, 1)
        n = max(test_labels.numel(), 1)
        out.append(KnnResult(k, float(hit[:, :1].sum()) * 100.0 / n,
                             float(hit[:, :min(5, kk, num_classes)].sum()) * 100.0 / n,
                             test_labels.numel()))
    return out


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor,
                queries: torch.Tensor, k: int, num_classes: int, temperature: float = 0.07,
                exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Vote shares (queries, classes) and predictions; ``exclude_self`` drops each query's own
    row (queries = the training set), for label-disagreement scores."""
    tr = F.normalize(train_features.float(), dim=1)
    q = F.normalize(queries.float(), dim=1)
    sims, idx = topk_neighbours(q, tr, k + int(exclude_self))
    if exclude_self:
        keep = idx != torch.arange(len(q)).view(-1, 1)
        # the row itself is (nearly always) first; drop it, or the last when a duplicate won
        order = keep.float().argsort(dim=1, descending=True, stable=True)[:, :k]
        sims, idx = sims.gather(1, order), idx.gather(1, order)
    votes = knn_votes(sims, train_labels[idx], num_classes, temperature)
    shares = votes / votes.sum(1, keepdim=True).clamp_min(1e-12)
    return shares, shares.argmax(1)
