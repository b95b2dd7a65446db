"""A finished run's classifier, ready for inference (``load_classifier(run_dir)``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from headless.train.classifier.models import Classifier, build_model
from headless.train.data.transforms import eval_transform


def load_classifier(run_dir: str | Path, ema: bool = False) -> tuple[Classifier, list[str], Any]:
    """A finished run's model (eval mode), class names and evaluation transform."""
    from safetensors import safe_open

    from headless.jobs.spec import load_spec

    run_dir = Path(run_dir)
    spec = load_spec(run_dir / "config.yaml")
    path = run_dir / ("model_ema_final.safetensors" if ema else "model_final.safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: has the run finished?")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        sd = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    from headless.features.layouts import non_finite_tensors

    bad = non_finite_tensors(sd)
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (e.g. "
                         f"{bad[0]}): the run diverged or the file is damaged")
    classes = json.loads(meta.get("classes", "[]"))
    cfg = spec.model.model_copy(update={"weights": "random", "resumed_model": None})
    built = build_model(cfg, len(classes))
    built.model.load_state_dict(sd)
    built.model.eval()
    return built.model, classes, eval_transform(spec.data.image_size, built.mean, built.std)
