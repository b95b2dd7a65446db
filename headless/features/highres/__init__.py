"""HR-Dv2 high-resolution features and stride reduction, without full maps unless asked for:
the full map (hr_features), the linear map (hr_linear), features at chosen pixels (hr_sample).

Names are re-exported lazily (``from headless.features.highres import hr_linear``); importing
the package loads no torch. The engine's scratch budgets (``WIDEN_BYTES``, ...) live in
:mod:`headless.features.highres.memory` and are read by the modules that import them.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("HRConfig", "UPSAMPLE_MODES", "RESIZE_MODES", "FITS"), "config"),
    **dict.fromkeys(
        ("MemoryEstimate", "MemoryLimitError", "available_memory", "estimate_memory",
         "memory_limit", "parse_bytes", "plan_chunk"),
        "memory",
    ),
    **dict.fromkeys(("Taps", "resize_taps"), "taps"),
    **dict.fromkeys(("FeatureFn", "average_over_transforms"), "average"),
    **dict.fromkeys(("check_stride", "patch_stride", "patch_tokens", "stride_grid"), "stride"),
    **dict.fromkeys(("hr_features", "prepare_image", "run_hr"), "driver"),
    "hr_linear": "linear",
    **dict.fromkeys(("hr_sample", "hr_sample_gen"), "sample"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
