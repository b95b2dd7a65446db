"""Attention maps for the attention crop: the map tv_tensors, their cleaning into densities, the
on-disk cache (store, packed maps) and the batched ViT pass that fills it.

Names are re-exported lazily (``from headless.train.attention_maps import AttentionMapStore``);
importing the package loads neither torch nor torchvision. Modules import each other by full path.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("AttentionDensity", "AttentionMap"), "tensors"),
    **dict.fromkeys(
        ("clean_attention_densities", "clean_attention_density", "gaussian_smooth",
         "replace_max_with_mean", "softmax_temperature"),
        "cleaning",
    ),
    **dict.fromkeys(
        ("CACHE_KIND", "AttentionMapStore", "PackedAttentionMaps", "backbone_key", "decode_map",
         "default_cache_dir", "encode_map"),
        "store",
    ),
    **dict.fromkeys(("compute_attention_maps", "grid_shape"), "compute"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
