"""Exact maths of the IELT parts: votes, enhancement, ranking, merger, DSM, CAM, losses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from headless.train.evaluate import evaluate, topk_correct
from headless.train.fgvc.losses import batch_hard_triplet, ielt_loss
from headless.train.fgvc.voting import (
    IELT_KERNEL,
    MultiHeadVoting,
    enhance_counts,
    rank_patches,
    vote_counts,
)


def test_votes_and_counts_on_a_hand_built_attention():
    # 1 image, 3 heads, 4 patches; each head votes for its 2 best patches
    attn = torch.tensor([[[0.1, 0.5, 0.3, 0.1],     # head 0 -> patches 1, 2
                          [0.6, 0.05, 0.3, 0.05],   # head 1 -> patches 0, 2
                          [0.2, 0.1, 0.3, 0.4]]])   # head 2 -> patches 3, 2
    counts = vote_counts(attn, 2)
    assert counts.tolist() == [[1.0, 1.0, 3.0, 1.0]]
    assert vote_counts(attn, 1).tolist() == [[1.0, 1.0, 0.0, 1.0]]
    # ties keep the lower index first: 2, then 0, 1, 3
    assert rank_patches(counts).tolist() == [[2, 0, 1, 3]]
    mhv = MultiHeadVoting(2, "none")
    idx, scores = mhv(attn, (2, 2), select=2)
    assert idx.tolist() == [[2, 0]] and torch.equal(scores, counts)


def _direct(counts: np.ndarray, kernel: np.ndarray, dilations) -> np.ndarray:
    h, w = counts.shape
    out = np.full((h, w), -np.inf)
    for d in dilations:
        acc = np.zeros((h, w))
        for y, x in itertools.product(range(h), range(w)):
            for i, j in itertools.product(range(3), range(3)):
                yy, xx = y + (i - 1) * d, x + (j - 1) * d
                if 0 <= yy < h and 0 <= xx < w:
                    acc[y, x] += kernel[i, j] * counts[yy, xx]
        out = np.maximum(out, acc)
    return out


@pytest.mark.parametrize("dilations", [(1,), (1, 2, 4), (2,)])
def test_dilated_enhancement_equals_a_direct_computation(dilations):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, (2, 5 * 7)).astype(np.float32)
    kernel = np.array(IELT_KERNEL)
    got = enhance_counts(torch.from_numpy(counts), (5, 7), torch.tensor(kernel).float(),
                         dilations)
    for b in range(2):
        want = _direct(counts[b].reshape(5, 7), kernel, dilations).reshape(-1)
        np.testing.assert_allclose(got[b].numpy(), want, rtol=0, atol=1e-5)


def test_one_vote_spreads_as_the_ielt_kernel_and_multiscale_keeps_the_maximum():
    counts = torch.zeros(1, 81)
    counts[0, 4 * 9 + 4] = 1.0  # the centre of a 9x9 grid
    k = torch.tensor(IELT_KERNEL)
    one = enhance_counts(counts, (9, 9), k, (1,)).reshape(9, 9)
    assert torch.equal(one[3:6, 3:6], k) and one.sum() == 16
    multi = enhance_counts(counts, (9, 9), k, (1, 2, 4)).reshape(9, 9)
    assert multi[4, 4] == 4 and multi[4, 6] == 2 and multi[0, 0] == 1 and multi[4, 8] == 2
    assert multi[1, 1] == 0  # no scale reaches it


def test_learnable_kernel_is_a_conv_with_bias():
    mhv = MultiHeadVoting(1, "learnable", (1,))
    attn = torch.rand(2, 3, 16)
    counts = vote_counts(attn, 1)
    want = F.conv2d(counts.reshape(2, 1, 4, 4), mhv.weight.reshape(1, 1, 3, 3), mhv.bias,
                    padding=1).reshape(2, -1)
    torch.testing.assert_close(mhv.scores(attn, (4, 4)), want)


def test_merger_shape_mean_start_and_gradients():
    from headless.train.fgvc.model import TokenMerger

    torch.manual_seed(0)
    m = TokenMerger(8, 3, n_layers=2)
    patches = [torch.randn(2, 6, 8, requires_grad=True) for _ in range(2)]
    sel = torch.zeros(2, 6, dtype=torch.bool)
    sel[:, :2] = True
    merged = [m.merge_layer(p, sel) for p in patches]
    out = m.combine(merged)
    assert out.shape == (2, 3, 8)
    # zero start: each merged token is the mean of the unselected tokens, layers averaged
    want = 0.5 * (patches[0][:, 2:].mean(1) + patches[1][:, 2:].mean(1))
    torch.testing.assert_close(out[:, 0], want)
    (out * torch.randn_like(out)).sum().backward()
    assert m.score.weight.grad.abs().sum() > 0 and m.layer_logits.grad.abs().sum() > 0
    assert patches[0].grad[:, :2].abs().sum() == 0  # selected tokens are not merged
    everything = torch.ones(2, 6, dtype=torch.bool)
    assert m.merge_layer(patches[0], everything).abs().sum() == 0


def test_batch_hard_triplet_on_a_hand_computed_batch():
    emb = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchors: (d+, d-) = (1, 3), (1, 2), (2, 2), (2, 4)
    assert batch_hard_triplet(emb, labels, 1.5).item() == pytest.approx((0 + .5 + 1.5 + 0) / 4)
    assert batch_hard_triplet(emb, labels, 1.0).item() == pytest.approx(0.25)
    # an anchor without a positive is left out
    assert batch_hard_triplet(emb[:3], labels[:3], 1.5).item() == pytest.approx(0.25)
    # 2-D: distances are Euclidean
    e2 = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    assert batch_hard_triplet(e2, torch.tensor([0, 0, 1]), 1.0).item() == pytest.approx(
        ((5 - 1 + 1) + max(0, 5 - np.hypot(3, 3) + 1)) / 2)
    assert batch_hard_triplet(emb, torch.tensor([0, 1, 2, 3]), 1.0).item() == 0.0


def test_ielt_loss_mix():
    torch.manual_seed(0)
    part, comp, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    want = 0.6 * F.cross_entropy(part, y) + 0.4 * F.cross_entropy(comp, y)
    torch.testing.assert_close(ielt_loss(part, comp, y, 0.4), want)
    torch.testing.assert_close(ielt_loss(part, None, y, 0.4), F.cross_entropy(part, y))


def test_topk_metrics_on_hand_made_logits():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0, -1],   # label 0: top-1
                           [5.0, 4, 3, 2, 1, 0, -1],   # label 4: top-5 only
                           [5.0, 4, 3, 2, 1, 0, -1],   # label 6: neither
                           [0.0, 9, 1, 1, 1, 1, 1]])   # label 1: top-1
    labels = torch.tensor([0, 4, 6, 1])
    assert topk_correct(logits, labels, 1) == 2 and topk_correct(logits, labels, 5) == 3

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits[x.long().view(-1)]

    res = evaluate(Fixed(), [(torch.arange(4.0), labels)], 7)
    assert res.acc1 == 0.5 and res.acc5 == 0.75
    assert res.per_class_recall()[:2] == [1.0, 1.0] and res.per_class_recall()[4] == 0.0
    assert res.confusion[4, 0] == 1 and res.confusion[6, 0] == 1


def test_triplet_batches_hold_whole_triplets_and_resume_exactly():
    from headless.train.fgvc.sampling import TripletBatches

    labels = [0] * 4 + [1] * 3 + [2] * 5
    tb = TripletBatches(labels, 6, seed=1, epoch=2)
    batches = list(tb)
    assert len(batches) == len(tb) == 6 == TripletBatches.steps_per_epoch(12, 6)
    anchors = []
    for b in batches:
        assert len(b) == 6 and all(e == 2 for e, _ in b)
        idx = [i for _, i in b]
        for a, p, n in zip(idx[0::3], idx[1::3], idx[2::3]):
            assert labels[p] == labels[a] and p != a and labels[n] != labels[a]
            anchors.append(a)
    assert sorted(anchors) == list(range(12))  # every image once as an anchor
    assert list(TripletBatches(labels, 6, 1, 2, start=4)) == batches[4:]
    assert list(TripletBatches(labels, 6, 1, 3)) != batches  # a new epoch, a new order
    # two ranks share every step's anchors between them
    r0, r1 = (list(TripletBatches(labels, 6, 1, 2, rank=r, world=2)) for r in (0, 1))
    assert len(r0) == 3 and {i for b in r0 + r1 for _, i in b[0::3]} == set(range(12))
