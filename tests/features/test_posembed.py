"""Position-embedding resizing: the official DINO / DINOv2 rule, transcribed from their code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from headless.features.backbones import load_backbone
from headless.features.posembed import resize_official, set_pos_resize


def official_interpolate_pos_encoding(pos_embed, x, w, h, patch_size):
    """facebookresearch/dino (and dinov2 before registers), ``interpolate_pos_encoding``
    verbatim but for names: ``x`` are the tokens, ``w, h`` the input's dims 2 and 3."""
    npatch = x.shape[1] - 1
    N = pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return pos_embed
    class_pos_embed = pos_embed[:, 0]
    patch_pos_embed = pos_embed[:, 1:]
    dim = x.shape[-1]
    w0 = w // patch_size
    h0 = h // patch_size
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos_embed = nn.functional.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
        mode="bicubic",
    )
    assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


@pytest.mark.parametrize("hw", [(16, 16), (8, 11), (37, 37), (40, 25), (1, 37)])
def test_resize_equals_the_official_code(hw):
    torch.manual_seed(0)
    table = torch.randn(1, 1 + 37 * 37, 8)
    h, w = hw
    x = torch.zeros(1, 1 + h * w, 8)
    ref = official_interpolate_pos_encoding(table, x, h * 14, w * 14, 14)
    ours = resize_official(table, (h, w), (37, 37), num_prefix_tokens=1)
    torch.testing.assert_close(ours, ref, atol=0, rtol=0)


def test_timm_rule_differs_off_grid_and_registers_follow_size_with_antialias():
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    table = torch.randn(1, 1 + 37 * 37, 8)
    timm = resample_abs_pos_embed(table, (16, 16), (37, 37), num_prefix_tokens=1)
    official = resize_official(table, (16, 16), (37, 37), 1)
    assert (timm - official).abs().max() > 0.05  # antialiasing smooths, the official code not
    # DINOv2 with registers: the hub builds them with offset 0 and antialias: timm's rule
    reg = resize_official(table, (16, 16), (37, 37), 1, offset=0.0, antialias=True)
    torch.testing.assert_close(reg, timm, atol=1e-6, rtol=1e-6)


def test_model_uses_the_chosen_rule_in_its_forward():
    bb = load_backbone("test_dino_tiny16", "random")
    assert bb.pos_resize == "timm"  # test architectures default to timm's rule
    model = bb.model
    x = torch.randn(1, 5, 7, model.embed_dim)  # (B, H, W, C) patch grid, as timm passes it
    ref = official_interpolate_pos_encoding(
        model.pos_embed, torch.zeros(1, 36, model.embed_dim), 5 * 16, 7 * 16, 16)
    set_pos_resize(model, "official", "dino")
    out = model._pos_embed(x)
    expected = torch.cat([model.cls_token, x.reshape(1, -1, model.embed_dim)], 1) + ref
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    set_pos_resize(model, "timm")
    assert type(model).__name__ == "VisionTransformer"
    assert not torch.allclose(model._pos_embed(x), out)


def test_official_backbones_default_to_the_official_rule_and_bad_names_are_refused():
    with pytest.raises(ValueError, match="official or timm"):
        load_backbone("test_dino_tiny16", "random", pos_resize="nearest")
    assert load_backbone("test_dino_tiny16", "random", pos_resize="official").pos_resize == \
        "official"
