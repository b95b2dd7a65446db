"""Features: the backbone registry and its weights (three key layouts, position-embedding rules),
one forward, HR-Dv2, the classical filter bank, dense features, views, foreground and clusters.

Names are re-exported lazily (``from headless.features import extract``); importing the package
loads neither torch nor timm. Modules inside the package import each other by full path.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("Backbone", "BackboneSpec", "REGISTRY", "WeightsError", "get_spec", "list_backbones",
         "load_backbone", "official_weights_path", "resolve_device"),
        "backbones",
    ),
    **dict.fromkeys(
        ("Features", "extract", "extract_image", "extract_images", "fit_pca_map", "pca_rgb",
         "attention_mask", "grid_to_image", "plan_size", "preprocess"),
        "forward",
    ),
    **dict.fromkeys(
        ("HRConfig", "MemoryLimitError", "estimate_memory", "hr_features", "hr_linear",
         "hr_sample"),
        "highres",
    ),
    **dict.fromkeys(("Transform", "TransformError", "hr_transforms", "shift_transforms"),
                    "transforms"),
    **dict.fromkeys(("classical_features", "classical_feature_names"), "classical"),
    **dict.fromkeys(("dense_features", "dense_pca_rgb", "mode_options"), "dense"),
    **dict.fromkeys(("FeatureViews", "feature_views"), "views"),
    **dict.fromkeys(("foreground", "foreground_from_features"), "foreground"),
    **dict.fromkeys(("cluster_pixels", "semantic_clusters"), "clusters"),
    **dict.fromkeys(("read_state_dict", "hf_to_official", "official_to_hf"), "layouts"),
    **dict.fromkeys(("resize_official", "set_pos_resize"), "posembed"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
