"""DINO's head, loss, centre, schedules, EMA and multi-crop against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from headless.train.ssl.head import DINOHead, MultiCropWrapper
from headless.train.ssl.loss import DINOLoss
from headless.train.ssl.models import (
    cancel_last_layer_gradients,
    clip_gradients,
    ema_update,
    param_groups,
)
from headless.train.ssl.schedules import cosine_schedule, teacher_temp_schedule


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _hand_loss(student, teacher, center, t_temp, s_temp, ncrops, batch):
    """The loss written out over the explicit list of (teacher crop, student crop) pairs."""
    s = [student[i * batch:(i + 1) * batch] / s_temp for i in range(ncrops)]
    t = [_softmax((teacher[i * batch:(i + 1) * batch] - center) / t_temp) for i in range(2)]
    pairs = [(iq, v) for iq in range(2) for v in range(ncrops) if v != iq]
    terms = []
    for iq, v in pairs:
        logp = s[v] - np.log(np.exp(s[v]).sum(-1, keepdims=True))
        terms.append(np.mean(np.sum(-t[iq] * logp, -1)))
    return float(np.mean(terms)), pairs


def test_dino_loss_centering_temperatures_and_pairs():
    rng = np.random.default_rng(0)
    batch, ncrops, dim = 2, 4, 5
    student = rng.normal(size=(ncrops * batch, dim))
    teacher = rng.normal(size=(2 * batch, dim))
    loss_fn = DINOLoss(dim, ncrops, 0.04, 0.07, warmup_teacher_temp_epochs=3, nepochs=5).double()
    center0 = rng.normal(size=(1, dim))
    loss_fn.center.copy_(torch.tensor(center0))
    got = loss_fn(torch.tensor(student), torch.tensor(teacher), epoch=1)
    want, pairs = _hand_loss(student, teacher, center0, 0.055, 0.1, ncrops, batch)
    assert pairs == [(0, 1), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]  # never a crop with itself
    assert float(got) == pytest.approx(want, rel=1e-10)
    # including the same-crop terms would give another value: the exclusion is what is tested
    all_pairs = [(iq, v) for iq in range(2) for v in range(ncrops)]
    assert len(all_pairs) != len(pairs)
    # centre: EMA 0.9 of the teacher's batch mean
    want_center = 0.9 * center0 + 0.1 * teacher.mean(0, keepdims=True)
    np.testing.assert_allclose(loss_fn.center.numpy(), want_center, rtol=1e-12)
    # epoch 4 is past the warm-up: 0.07 with the *updated* centre
    got4 = loss_fn(torch.tensor(student), torch.tensor(teacher), epoch=4)
    want4, _ = _hand_loss(student, teacher, want_center, 0.07, 0.1, ncrops, batch)
    assert float(got4) == pytest.approx(want4, rel=1e-10)


def test_teacher_temperature_and_cosine_schedules():
    np.testing.assert_allclose(teacher_temp_schedule(0.04, 0.07, 3, 5),
                               [0.04, 0.055, 0.07, 0.07, 0.07])
    epochs, spe, warm = 4, 5, 1
    s = cosine_schedule(1.0, 0.1, epochs, spe, warmup_epochs=warm)
    assert len(s) == epochs * spe
    assert s[0] == 0.0 and s[warm * spe - 1] == pytest.approx(1.0)  # linear warm-up ends at base
    assert s[warm * spe] == pytest.approx(1.0)  # cosine starts at base
    n = epochs * spe - warm * spe
    assert s[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * (n - 1) / n)))
    m = cosine_schedule(0.996, 1.0, 10, 3)
    assert m[0] == pytest.approx(0.996) and 0.996 < m[-1] < 1.0 and np.all(np.diff(m) >= 0)
    wd = cosine_schedule(0.04, 0.4, 10, 3)
    assert wd[0] == pytest.approx(0.04) and wd[15] == pytest.approx(0.22)  # half-way: the mean


def test_teacher_ema_is_exact():
    torch.manual_seed(0)
    s, t = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in t.parameters()]
    ema_update(s, t, 0.9)
    for b, ps, pt in zip(before, s.parameters(), t.parameters(), strict=True):
        assert torch.allclose(pt, 0.9 * b + 0.1 * ps, atol=1e-7)


def test_weight_normalised_last_layer_keeps_unit_norm_when_frozen():
    torch.manual_seed(0)
    head = DINOHead(8, out_dim=6, hidden_dim=16, bottleneck_dim=4)
    ll = head.last_layer
    assert torch.all(ll.weight_g == 1) and not ll.weight_g.requires_grad
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1.0)
    head(torch.randn(5, 8)).pow(2).sum().backward()
    opt.step()
    w = ll.weight_g * ll.weight_v / ll.weight_v.norm(dim=1, keepdim=True)
    assert torch.all(ll.weight_g == 1)
    assert torch.allclose(w.norm(dim=1), torch.ones(6), atol=1e-6)
    # the head's input to the last layer is L2-normalised
    z = torch.nn.functional.normalize(head.mlp(torch.randn(3, 8)), dim=-1)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-6)
    free = DINOHead(8, out_dim=6, hidden_dim=16, bottleneck_dim=4, norm_last_layer=False)
    assert free.last_layer.weight_g.requires_grad
    mlp = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in mlp] == [16, 16, 4]  # 3 layers, bottleneck last


def test_multicrop_wrapper_runs_the_backbone_once_per_resolution():
    calls = []

    class Backbone(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x.mean(dim=(2, 3))

    w = MultiCropWrapper(Backbone(), torch.nn.Identity())
    crops = [torch.randn(2, 3, 32, 32)] * 2 + [torch.randn(2, 3, 16, 16)] * 3
    out = w(crops)
    assert calls == [(4, 3, 32, 32), (6, 3, 16, 16)] and out.shape == (10, 3)


def test_clipping_last_layer_freeze_and_weight_decay_groups():
    head = DINOHead(4, out_dim=3, hidden_dim=8, bottleneck_dim=2)
    for p in head.parameters():
        p.grad = torch.full_like(p, 10.0)
    norms = clip_gradients(head, 3.0)
    for p, n in zip([p for p in head.parameters() if p.grad is not None], norms, strict=True):
        assert n > 3 and p.grad.norm() == pytest.approx(3.0 * n / (n + 1e-6), rel=1e-5)
    cancel_last_layer_gradients(0, head, 1)
    assert head.last_layer.weight_v.grad is None and head.mlp[0].weight.grad is not None
    head.mlp[0].weight.grad = torch.ones_like(head.mlp[0].weight)
    head.last_layer.weight_v.grad = torch.ones_like(head.last_layer.weight_v)
    cancel_last_layer_gradients(1, head, 1)  # after the first epoch: untouched
    assert head.last_layer.weight_v.grad is not None
    groups = param_groups(head)
    assert all(p.ndim > 1 for p in groups[0]["params"])
    assert all(p.ndim == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0


def test_multicrop_sizes_counts_and_keyed_randomness():
    from PIL import Image

    from headless.train.data.dataset import seeded
    from headless.train.ssl.augment import MultiCrop

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 150, 3), np.uint8))
    mc = MultiCrop((0.4, 1.0), (0.05, 0.4), n_local=3, global_size=64, local_size=32)
    with seeded(5):
        a = mc(img)
    with seeded(5):
        b = mc(img)
    assert [tuple(c.shape) for c in a] == [(3, 64, 64)] * 2 + [(3, 32, 32)] * 3
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[2], a[3])  # each local crop its own draw
