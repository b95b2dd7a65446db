"""The real DINOv2 ViT-S/14 through every path a user takes: a file, ``official`` from the cache
(torch hub name, Hugging Face snapshot), and the official / timm / transformers key layouts.

All of them must give identical features, because they are the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headless.features.backbones import get_spec, load_backbone, official_weights_path
from headless.features.forward import extract_image
from headless.features.layouts import official_to_hf, read_state_dict

_CACHE: dict[str, object] = {}


def _image() -> np.ndarray:
    """A fixed 210 x 280 colour image (15 x 20 patches: off the 37 x 37 pretraining grid)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:210, 0:280]
    img = np.stack([np.sin(xx / 17.0), np.cos(yy / 11.0), ((xx - 140) ** 2 + (yy - 105) ** 2
                    < 60 ** 2).astype(float)], axis=-1)
    return (img * 0.4 + 0.5 + 0.05 * rng.standard_normal(img.shape)).clip(0, 1)


@pytest.fixture(scope="module")
def reference(shared_weights):
    """Features of the shared file loaded with ``--weights FILE`` (the documented path)."""
    if "ref" not in _CACHE:
        bb = load_backbone("dinov2_vits14", shared_weights)
        _CACHE["ref"] = (bb, extract_image(bb, _image()))
    return _CACHE["ref"]


def _same(a, b) -> None:
    torch.testing.assert_close(a.patch, b.patch, atol=0, rtol=0)
    torch.testing.assert_close(a.attn, b.attn, atol=0, rtol=0)
    torch.testing.assert_close(a.cls, b.cls, atol=0, rtol=0)


def test_weights_file_path_loads_real_dinov2(reference, shared_weights):
    bb, f = reference
    assert bb.weights_label == f"file ({shared_weights.name})" and not bb.is_random
    assert bb.pos_resize == "official"
    assert f.patch.shape == (1, 15, 20, 384) and f.attn.shape == (1, 6, 15, 20)
    # the planted disc (third channel) is one object: its patches resemble each other more
    # than they resemble the background
    feats = torch.nn.functional.normalize(f.patch[0], dim=-1).reshape(-1, 384)
    yy, xx = np.mgrid[0:15, 0:20]
    disc = torch.from_numpy((((xx + 0.5) * 14 - 140) ** 2 + ((yy + 0.5) * 14 - 105) ** 2
                             < 45 ** 2).reshape(-1))
    sim = feats @ feats.T
    inside = sim[disc][:, disc].mean()
    across = sim[disc][:, ~disc].mean()
    assert inside > across + 0.1


def test_official_name_in_the_cache_gives_the_same_features(reference, shared_weights,
                                                            monkeypatch, tmp_path):
    """``weights='official'`` with the checkpoint placed in the cache as torch hub names it."""
    monkeypatch.setenv("DINOSEG_CACHE", str(tmp_path))
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))
    spec = get_spec("dinov2_vits14")
    torch.save(read_state_dict(shared_weights), tmp_path / spec.filename)  # as a .pth, like Meta's
    assert official_weights_path(spec, download=False) == tmp_path / "dinov2_vits14_pretrain.pth"
    bb = load_backbone("dinov2_vits14", "official")
    assert bb.weights_label == "official (dinov2_vits14_pretrain.pth)"
    _same(reference[1], extract_image(bb, _image()))


def test_transformers_layout_file_and_hub_cache_give_the_same_features(
        reference, shared_weights, monkeypatch, tmp_path):
    from safetensors.torch import save_file

    hf = official_to_hf(read_state_dict(shared_weights))
    assert "encoder.layer.0.attention.attention.query.weight" in hf
    assert "embeddings.patch_embeddings.projection.weight" in hf
    assert "encoder.layer.11.layer_scale1.lambda1" in hf and "layernorm.bias" in hf
    assert not any(k.startswith("blocks.") for k in hf)
    path = tmp_path / "hf_layout.safetensors"
    save_file(hf, str(path))
    _same(reference[1], extract_image(load_backbone("dinov2_vits14", path), _image()))
    # the same file as transformers' hub cache holds it: official weights found offline
    hub = tmp_path / "hub"
    repo = hub / "models--facebook--dinov2-small"
    (repo / "snapshots" / "a1b2c3").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a1b2c3")
    path.rename(repo / "snapshots" / "a1b2c3" / "model.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("DINOSEG_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    bb = load_backbone("dinov2_vits14", "official")
    assert bb.weights_label == "official (facebook/dinov2-small)"
    _same(reference[1], extract_image(bb, _image()))


def test_timm_layout_gives_the_same_features(reference, tmp_path):
    bb, f = reference
    sd = {k: v.contiguous() for k, v in bb.model.state_dict().items()}  # timm's own keys
    torch.save(sd, tmp_path / "timm.pth")
    _same(f, extract_image(load_backbone("dinov2_vits14", tmp_path / "timm.pth"), _image()))


def test_renamed_safetensors_file_is_recognised_by_content(shared_weights, tmp_path):
    link = tmp_path / "weights.bin"
    link.symlink_to(shared_weights)
    assert len(read_state_dict(link)) == 174


def test_official_and_timm_resizing_agree_on_the_pretraining_grid_only(reference,
                                                                       shared_weights):
    bb, f = reference
    timm_bb = load_backbone("dinov2_vits14", shared_weights, pos_resize="timm")
    assert timm_bb.pos_resize == "timm"
    g = extract_image(timm_bb, _image())
    rel = (f.patch - g.patch).norm() / f.patch.norm()
    assert 1e-4 < rel < 0.2  # a small, real difference off the pretraining grid
    img = np.random.default_rng(0).random((518, 518, 3))
    _same(extract_image(bb, img), extract_image(timm_bb, img))  # 37 x 37: the table unchanged
