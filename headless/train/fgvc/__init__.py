"""Fine-grained classification (issue 11, seed 002): IELT on a DINOv2 / ViT-B/16 backbone.

Voting and enhancement, the model (MHV, CLR, DSM, CAM, token merger) and the linear baseline,
losses, dataset layouts, triplet batches, the ``fgvc`` job spec and job, loading a run,
evaluation, prediction and per-layer vote maps. Names are re-exported lazily; importing the
package loads neither torch nor timm.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("IELT_KERNEL", "MultiHeadVoting", "enhance_counts", "rank_patches",
                     "vote_counts"), "voting"),
    **dict.fromkeys(("FgvcOutput", "IELTModel", "LinearModel", "TokenMerger", "attend"),
                    "model"),
    **dict.fromkeys(("batch_hard_triplet", "ielt_loss"), "losses"),
    **dict.fromkeys(("FgvcSplits", "detect_layout", "read_splits"), "datasets"),
    **dict.fromkeys(("FgvcSpec", "IeltConfig", "resolved_opt"), "spec"),
    **dict.fromkeys(("FgvcModelError", "known_backbones", "load_trunk"), "backbone"),
    **dict.fromkeys(("LoadedRun", "build_fgvc", "load_fgvc"), "build"),
    **dict.fromkeys(("Prediction", "evaluate_run", "evaluate_run_iter", "predict_iter",
                     "predictions_csv"), "evaluation"),
    **dict.fromkeys(("preflight", "run"), "job"),
    "TripletBatches": "sampling",
    **dict.fromkeys(("VoteView", "explain_image", "explain_iter"), "votes"),
    "make_planted_fgvc": "synthetic",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
