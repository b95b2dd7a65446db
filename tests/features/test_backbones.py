"""Backbone registry and weight loading through the real paths, with tiny random models."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from headless.features.backbones import (
    REGISTRY,
    WeightsError,
    cache_dir,
    get_spec,
    list_backbones,
    load_backbone,
    official_weights_path,
    to_official_state_dict,
)
from headless.features.forward import extract_image


def test_registry_covers_dino_and_dinov2_families():
    names = set(list_backbones())
    for n in ["dino_vits16", "dino_vits8", "dino_vitb16", "dino_vitb8"]:
        assert n in names and REGISTRY[n].family == "dino"
        assert REGISTRY[n].url.startswith("https://dl.fbaipublicfiles.com/dino/")
    for size in "sblg":
        for suffix, regs in (("", 0), ("_reg", 4)):
            spec = REGISTRY[f"dinov2_vit{size}14{suffix}"]
            assert spec.patch_size == 14 and spec.num_registers == regs
            assert spec.url.startswith("https://dl.fbaipublicfiles.com/dinov2/dinov2_vit")
            assert ("reg4" in spec.url) == bool(regs)
    assert REGISTRY["dino_vits8"].patch_size == 8
    assert REGISTRY["dinov2_vitg14"].embed_dim == 1536
    assert REGISTRY["dino_vitb16"].mean == (0.485, 0.456, 0.406)


def test_unknown_backbone_names_the_choices():
    with pytest.raises(KeyError, match="dinov2_vits14"):
        get_spec("dinov3_huge")


@pytest.mark.parametrize("name", ["test_dino_tiny16", "test_dinov2_tiny14_reg"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_official_layout_checkpoint_round_trip(tmp_path, name, suffix):
    """A random model saved in the facebookresearch layout loads back to identical outputs."""
    torch.manual_seed(1)
    ref = load_backbone(name, "random")
    for p in ref.model.parameters():  # make sure weights are not the default init
        p.data.add_(torch.randn_like(p) * 0.01)
    sd = to_official_state_dict(ref.model, ref.spec)
    if name.endswith("_reg"):
        assert "register_tokens" in sd and "mask_token" in sd and "reg_token" not in sd
        n_patches = (ref.spec.img_size // 14) ** 2
        assert sd["pos_embed"].shape[1] == 1 + n_patches  # CLS slot kept, as in dinov2
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    loaded = load_backbone(name, path)
    assert loaded.weights_label == f"file ({path.name})" and not loaded.is_random
    img = np.random.default_rng(0).random((60, 75, 3)).astype(np.float32)
    a, b = extract_image(ref, img), extract_image(loaded, img)
    torch.testing.assert_close(a.patch, b.patch, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.attn, b.attn, atol=1e-6, rtol=1e-5)


def test_training_checkpoint_with_teacher_prefix_loads(tmp_path):
    ref = load_backbone("test_dino_tiny16", "random")
    sd = {f"module.backbone.{k}": v for k, v in ref.model.state_dict().items()}
    sd["module.head.mlp.0.weight"] = torch.zeros(4, 4)  # DINO projection head: ignored
    torch.save({"teacher": sd, "epoch": 3}, tmp_path / "checkpoint.pth")
    loaded = load_backbone("test_dino_tiny16", tmp_path / "checkpoint.pth")
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(v, loaded.model.state_dict()[k])


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    other = load_backbone("test_dinov2_tiny14_reg", "random")
    torch.save(other.model.state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="does not fit"):
        load_backbone("test_dino_tiny16", tmp_path / "other.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    with pytest.raises(WeightsError, match="without executing pickled code"):
        load_backbone("test_dino_tiny16", path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_missing_official_weights_offline_give_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    monkeypatch.setenv("DINOSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError) as err:
        load_backbone("dinov2_vits14", "official")
    msg = str(err.value)
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth" in msg
    assert str(tmp_path / "cache" / "dinov2_vits14_pretrain.pth") in msg
    assert "random" in msg


def test_cache_folder_is_moved_by_environment_and_found(monkeypatch, tmp_path):
    monkeypatch.setenv("DINOSEG_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    spec = get_spec("dino_vits16")
    # a checkpoint already in the cache (as a download would leave it) is used, no network
    model = load_backbone("dino_vits16", "random").model
    torch.save(to_official_state_dict(model, spec), tmp_path / spec.filename)
    assert official_weights_path(spec, download=False) == tmp_path / "dino_deitsmall16_pretrain.pth"
    loaded = load_backbone("dino_vits16", "official")
    assert loaded.weights_label == "official (dino_deitsmall16_pretrain.pth)"


def test_random_weights_are_labelled_and_reproducible():
    a = load_backbone("test_dino_tiny16", "random")
    b = load_backbone("test_dino_tiny16", "random")
    assert a.is_random and a.weights_label == "random (untrained)"
    for (k, v), (_, w) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(v, w), k


def test_test_architectures_have_no_official_weights():
    with pytest.raises(WeightsError, match="random"):
        load_backbone("test_dino_tiny16", "official")


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_backbone("test_dino_tiny16", "random", device="cuda")


@pytest.mark.parametrize("prefix", ["", "dinov2."])
def test_transformers_layout_with_registers_round_trips(tmp_path, prefix):
    """Runs without ../shared: a tiny DINOv2-with-registers in transformers' key layout."""
    from safetensors.torch import save_file

    from headless.features.layouts import hf_to_official, official_to_hf

    ref = load_backbone("test_dinov2_tiny14_reg", "random")
    for p in ref.model.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    official = to_official_state_dict(ref.model, ref.spec)
    hf = {prefix + k: v for k, v in official_to_hf(official).items()}
    assert prefix + "embeddings.register_tokens" in hf
    assert prefix + "encoder.layer.1.attention.attention.value.bias" in hf
    back = hf_to_official(hf)
    assert set(back) == set(official)
    for k in official:
        assert torch.equal(back[k], official[k]), k
    save_file({k: v.contiguous() for k, v in hf.items()}, str(tmp_path / "m.safetensors"))
    loaded = load_backbone("test_dinov2_tiny14_reg", tmp_path / "m.safetensors")
    img = np.random.default_rng(0).random((60, 75, 3)).astype(np.float32)
    torch.testing.assert_close(extract_image(ref, img).patch, extract_image(loaded, img).patch,
                               atol=0, rtol=0)


def test_model_with_official_resizing_pickles():
    import pickle

    bb = load_backbone("test_dino_tiny16", "random", pos_resize="official")
    clone = pickle.loads(pickle.dumps(bb.model))
    assert type(clone).__name__ == "OfficialVisionTransformer"
    x = torch.randn(1, 3, 80, 96)
    torch.testing.assert_close(clone.forward_features(x), bb.model.forward_features(x))
