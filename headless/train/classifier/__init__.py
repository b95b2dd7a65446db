"""The seed-000 classifier job: its models, optimiser and EMA, runtime (seeds, RNG, DDP, device),
checkpoints, trackers, the training loop (``job.run`` / ``job.preflight``) and ``load_classifier``.

Names are re-exported lazily (``from headless.train.classifier import load_classifier``);
importing the package loads neither torch nor torchvision. Modules import each other by full path.
"""

from __future__ import annotations

from headless.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("RESNETS", "TINY_RESNET", "TORCHVISION_WEIGHTS", "BuiltModel", "Classifier",
         "ModelError", "TinyResNet", "build_model", "check_model", "is_vit", "known_models"),
        "models",
    ),
    **dict.fromkeys(("build_optimizer", "make_ema"), "optim"),
    **dict.fromkeys(
        ("DistInfo", "any_rank", "init_distributed", "resolve_device", "rng_state",
         "set_determinism", "set_rng_state"),
        "runtime",
    ),
    **dict.fromkeys(
        ("CHECKPOINT_DIR", "LAST", "load_checkpoint", "save_checkpoint", "save_weights"),
        "checkpoints",
    ),
    "Trackers": "trackers",
    **dict.fromkeys(("AttentionLookup", "attention_lookup"), "attention_lookup"),
    **dict.fromkeys(("preflight", "run"), "job"),
    "load_classifier": "inference",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
