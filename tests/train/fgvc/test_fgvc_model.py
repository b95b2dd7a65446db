"""The IELT model on tiny random ViTs: block maths, selection, DSM, CAM, accumulation."""

from __future__ import annotations

import pytest
import torch

from headless.train.fgvc.backbone import load_trunk
from headless.train.fgvc.job import sub_batches
from headless.train.fgvc.model import FgvcOutput, IELTModel, attend, embed
from headless.train.fgvc.spec import FgvcSpec, IeltConfig


def _model(name="test_dinov2_tiny14_reg", **ielt):
    trunk = load_trunk(name, "random")
    cfg = IeltConfig(**{"total_num": 10, "vote_perhead": 4, **ielt})
    return IELTModel(trunk.vit, 5, cfg, trunk.num_prefix, trunk.patch_size), trunk


def test_attend_is_the_timm_block_and_its_cls_attention():
    model, trunk = _model()
    model.eval()
    x = embed(trunk.vit, torch.randn(2, 3, 56, 70))
    blk = trunk.vit.blocks[0]
    out, cls_attn = attend(blk, x)
    torch.testing.assert_close(out, blk(x))
    a = blk.attn
    h = blk.norm1(x)
    q, k, _ = a.qkv(h).reshape(2, x.shape[1], 3, a.num_heads, a.head_dim).permute(
        2, 0, 3, 1, 4).unbind(0)
    full = (q @ k.transpose(-2, -1) * a.scale).softmax(-1)
    torch.testing.assert_close(cls_attn, full[:, :, 0])
    assert trunk.num_prefix == 5  # CLS + 4 registers are never voted for


def test_forward_shapes_selection_and_cam_formula():
    torch.manual_seed(0)
    model, trunk = _model(merge_tokens=2)
    model.eval()
    for p in model.head.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(3, 3, 56, 56)  # 4x4 grid
    out = model.forward_all(x, keep_maps=True)
    assert out.logits.shape == (3, 5) and out.complement.shape == (3, 5)
    assert out.layer_counts == [10] and out.vote_maps[0].shape == (3, 4, 4)
    assert out.clr_rank.shape == (3, 12) and out.clr_rank.min() >= 1  # 10 selected + 2 merged
    seen = {}
    model.key_norm.register_forward_hook(lambda m, i, o: seen.__setitem__("key", o))
    model.clr_norm.register_forward_hook(lambda m, i, o: seen.__setitem__("clr", o))
    out = model.forward_all(x)
    w, b = model.head.weight, model.head.bias
    comp = seen["clr"][:, 0] @ w.T + b
    want = seen["key"][:, 0] @ w.T + b + comp.softmax(-1) * w.sum(-1)
    torch.testing.assert_close(out.complement, comp)
    torch.testing.assert_close(out.logits, want)
    torch.testing.assert_close(model(x), out.logits)


def test_dsm_update_follows_the_clr_votes():
    model, trunk = _model("test_dino_tiny16", total_num=6, dsm_alpha=0.5)
    # a depth-2 backbone has one voting layer: make a 3-layer one by hand
    model.n_layers = 3
    model.select_rate = torch.ones(3, dtype=torch.float64) / 3
    out = FgvcOutput(torch.zeros(1, 5), clr_rank=torch.tensor([[1, 2, 3, 5, 6, 7]]),
                     layer_counts=[2, 2, 2])
    counts = model.update_selection(out)
    # positions 0..5 (1-based 1..7 minus CLS); 6 is beyond the selected tokens (a merged one)
    assert counts.tolist() == [2, 1, 2]
    want = torch.tensor([1 / 3, 1 / 3, 1 / 3]) * 0.5 + 0.5 * torch.tensor([0.4, 0.2, 0.4])
    torch.testing.assert_close(model.select_rate.float(), want / want.sum())
    assert model.select_nums(100) == [round(6 * v) for v in (want / want.sum()).tolist()]


def test_random_selection_differs_from_votes():
    torch.manual_seed(0)
    model, _ = _model(selection="vote")
    x = torch.randn(2, 3, 56, 56)
    a = model.forward_all(x).logits
    model.cfg = model.cfg.model_copy(update={"selection": "random"})
    for p in model.head.parameters():
        torch.nn.init.normal_(p)
    model.eval()
    torch.manual_seed(1)
    r1 = model.forward_all(x).logits
    model.cfg = model.cfg.model_copy(update={"selection": "vote"})
    v = model.forward_all(x).logits
    assert not torch.allclose(r1, v) and a.shape == v.shape


def test_sub_batches_partition_the_batch():
    parts = sub_batches(8, 3)
    idx = sorted(i for s in parts for i in range(8)[s])
    assert idx == list(range(8)) and len(parts) == 3
    assert parts == [slice(0, 3), slice(3, 6), slice(6, 8)]
    assert sub_batches(8, None) == [slice(0, 8)] == sub_batches(8, 8)


def test_accumulated_gradients_equal_the_full_batch():
    from headless.train.fgvc.job import train_step

    spec = FgvcSpec(model={"backbone": "test_dino_tiny16", "weights": "random"},
                    ielt={"total_num": 6, "vote_perhead": 2, "dsm": False},
                    loss={"triplet_weight": 0.0}, data={"batch_size": 6})
    grads = []
    for sub in (None, 2):
        torch.manual_seed(0)
        model, _ = _model("test_dino_tiny16", total_num=6, vote_perhead=2, dsm=False)
        torch.nn.init.normal_(model.head.weight, std=0.1)
        model.train()
        s = spec.model_copy(update={"data": spec.data.model_copy(update={"sub_batch": sub})})
        x, y = torch.randn(6, 3, 64, 64), torch.tensor([0, 1, 2, 3, 4, 0])
        loss, _ = train_step(model, model, x, y, s, None, False)
        grads.append((loss, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_supervised_vit_b16_from_a_timm_file(tmp_path):
    from safetensors.torch import save_file

    from headless.train.fgvc.backbone import check_backbone

    trunk = load_trunk("vit_b16", "random")
    assert trunk.patch_size == 16 and trunk.num_prefix == 1
    sd = {k: v.clone() + 0.01 for k, v in trunk.vit.state_dict().items()}
    save_file(sd, str(tmp_path / "vit.safetensors"))
    again = load_trunk("vit_b16", str(tmp_path / "vit.safetensors"))
    assert again.label == "file (vit.safetensors)"
    for k, v in again.vit.state_dict().items():
        assert torch.equal(v, sd[k]), k
    model = IELTModel(again.vit, 3, IeltConfig(total_num=4, vote_perhead=2), 1, 16)
    model.eval()
    with torch.no_grad():  # 448-style resizing: a 64 px input has a 4x4 grid
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    with pytest.raises(Exception, match="no downloadable weights"):
        check_backbone("vit_b16", "official", 448)
    with pytest.raises(Exception, match="not a multiple of vit_b16's patch size 16"):
        check_backbone("vit_b16", "random", 450)
