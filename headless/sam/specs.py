"""The registry of SAM variants: architecture and official checkpoint (ViT-B/L/H, tiny test).

A leaf module (no torch, nothing of this package): :mod:`.model` and :mod:`.weights` both need
:class:`SamSpec`, and keeping it here is what lets :mod:`.weights` import :mod:`.model` freely.
"""

from __future__ import annotations

from dataclasses import dataclass


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamSpec:
    """Architecture and official weights of one SAM variant.

    The defaults are those of Meta's ``build_sam.py``; only the encoder differs between
    ViT-B/L/H. The test architecture shrinks everything but keeps the same modules, so its
    state dict has the official key layout.
    """

    name: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    filename: str
    url: str | None
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    is_test: bool = False


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

SAM_MODELS: dict[str, SamSpec] = {
    "vit_b": SamSpec(
        "vit_b", 768, 12, 12, (2, 5, 8, 11),
        filename="sam_vit_b_01ec64.pth", url=_SAM_URL + "sam_vit_b_01ec64.pth",
    ),
    "vit_l": SamSpec(
        "vit_l", 1024, 24, 16, (5, 11, 17, 23),
        filename="sam_vit_l_0b3195.pth", url=_SAM_URL + "sam_vit_l_0b3195.pth",
    ),
    "vit_h": SamSpec(
        "vit_h", 1280, 32, 16, (7, 15, 23, 31),
        filename="sam_vit_h_4b8939.pth", url=_SAM_URL + "sam_vit_h_4b8939.pth",
    ),
    # tiny, for tests and benchmarks: 128 px input, 8x8 embedding grid, 32-d everything
    "test_sam_tiny": SamSpec(
        "test_sam_tiny", 32, 2, 2, (1,),
        filename="sam_test_tiny.pth", url=None,
        image_size=128, window_size=4, prompt_embed_dim=32, mask_in_chans=4,
        decoder_depth=2, decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32,
        is_test=True,
    ),
}


def list_sam_models(include_test: bool = False) -> list[str]:
    """Names of the registered SAM variants (the official ones first)."""
    return [n for n, s in SAM_MODELS.items() if include_test or not s.is_test]


def get_spec(name: str) -> SamSpec:
    try:
        return SAM_MODELS[name]
    except KeyError:
        known = ", ".join(SAM_MODELS)
        raise ValueError(f"unknown SAM model {name!r}; known models: {known}") from None
